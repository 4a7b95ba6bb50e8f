package membership

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// refusalEvery limits refusal warnings to one per source host per period.
const refusalEvery = 30 * time.Second

// logWriter turns memberlist's log lines ("[ERR] memberlist: ...") into
// slog records. Packets and streams that memberlist drops because they are
// not encrypted with this cluster's key (or carry another cluster's label)
// become one clear warning per source host.
type logWriter struct {
	log       *slog.Logger
	onSuspect func(name string)

	mu      sync.Mutex
	refused map[string]time.Time // host → last warning
}

func (w *logWriter) Write(p []byte) (int, error) {
	for line := range strings.Lines(string(p)) {
		w.line(strings.TrimSpace(line), time.Now())
	}
	return len(p), nil
}

func (w *logWriter) line(line string, now time.Time) {
	level, msg := slog.LevelInfo, line
	if rest, ok := strings.CutPrefix(line, "["); ok {
		if tag, after, ok := strings.Cut(rest, "]"); ok {
			msg = strings.TrimSpace(after)
			switch tag {
			case "DEBUG":
				level = slog.LevelDebug
			case "WARN", "ERR", "ERROR":
				level = slog.LevelWarn
			}
		}
	}
	msg = strings.TrimPrefix(msg, "memberlist: ")
	if reason, ok := refusalReason(msg); ok {
		host := sourceHost(msg)
		if w.firstRefusal(host, now) {
			w.log.Warn("refused packet from "+host+": "+reason, "detail", msg)
		} else {
			w.log.Debug("refused packet from "+host+": "+reason, "detail", msg)
		}
		return
	}
	if name, ok := strings.CutPrefix(msg, "Suspect "); ok {
		if name, _, ok := strings.Cut(name, " has failed"); ok && w.onSuspect != nil {
			w.onSuspect(name)
		}
	}
	w.log.Log(context.Background(), level, msg, "from", "memberlist")
}

// refusalReason reports whether a memberlist message says it dropped
// traffic for not being this cluster's, and why in a user's words.
func refusalReason(msg string) (string, bool) {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "unacceptable label"):
		return "it belongs to another drift cluster (not encrypted with this cluster's key)", true
	case strings.Contains(m, "decrypt"),
		strings.Contains(m, "not encrypted"),
		strings.Contains(m, "encryption is not configured"),
		strings.Contains(m, "payload is too small"):
		return "not encrypted with this cluster's key", true
	}
	return "", false
}

// sourceHost extracts the host of memberlist's "from=HOST:PORT" suffix.
func sourceHost(msg string) string {
	_, from, ok := strings.Cut(msg, "from=")
	if !ok {
		return "unknown address"
	}
	from, _, _ = strings.Cut(from, " ")
	if host, _, err := net.SplitHostPort(from); err == nil {
		return host
	}
	return from
}

func (w *logWriter) firstRefusal(host string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refused == nil {
		w.refused = map[string]time.Time{}
	}
	if last, ok := w.refused[host]; ok && now.Sub(last) < refusalEvery {
		return false
	}
	w.refused[host] = now
	return true
}
