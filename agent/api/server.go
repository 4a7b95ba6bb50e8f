package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// Cluster is what the server needs from the agent: the member list at
// now, this node included (marked Self).
type Cluster interface {
	Nodes(now time.Time) []Node
}

// Server serves the agent's API. Set the fields, then Run.
type Server struct {
	Cluster Cluster        // required
	Key     clusterkey.Key // the cluster key: TCP clients must hold it (when Keys is nil)
	// Keys are the keys the agent holds, which drift rekey changes while
	// it runs: TCP clients must hold one it accepts. nil: Key alone.
	Keys       *clusterkey.Ring
	SocketPath string           // "": DefaultSocket
	TCPAddr    string           // "": ":7947" on every address; "-": no TCP
	Logger     *slog.Logger     // nil: slog.Default()
	Now        func() time.Time // nil: time.Now
	// Routes are more endpoints, served on both sockets: a ServeMux
	// pattern ("POST /v1/jobs") to its handler. The agent adds those of
	// its other services here. nil: none.
	Routes map[string]http.Handler

	certs certCache
}

// keys are the keys the server accepts.
func (s *Server) keys() *clusterkey.Ring {
	if s.Keys != nil {
		return s.Keys
	}
	return clusterkey.NewRing(clusterkey.Of(s.Key))
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Run serves the API on the unix socket and the TCP port until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	ls, err := s.Listen()
	if err != nil {
		return err
	}
	return s.ServeListeners(ctx, ls)
}

// Listeners are the API's open sockets.
type Listeners struct {
	Unix net.Listener
	TCP  net.Listener // nil when TCPAddr is "-"
}

// Listen opens the unix socket at SocketPath and the TCP port at TCPAddr.
func (s *Server) Listen() (*Listeners, error) {
	path := s.SocketPath
	if path == "" {
		path = DefaultSocket
	}
	ul, err := ListenUnix(path)
	if err != nil {
		return nil, err
	}
	ls := &Listeners{Unix: ul}
	if s.TCPAddr != "-" {
		addr := s.TCPAddr
		if addr == "" {
			addr = ":" + strconv.Itoa(DefaultPort)
		}
		if ls.TCP, err = net.Listen("tcp", addr); err != nil {
			ul.Close()
			return nil, fmt.Errorf("api listen on %s: %w", addr, err)
		}
	}
	return ls, nil
}

// ServeListeners serves the API on ls (plain on Unix, mutual TLS on TCP)
// until ctx ends.
func (s *Server) ServeListeners(ctx context.Context, ls *Listeners) error {
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Add(1)
	go func() { defer wg.Done(); errs[0] = s.Serve(ctx, ls.Unix) }()
	if ls.TCP != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errs[1] = s.ServeTLS(ctx, ls.TCP) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// ListenUnix listens on a unix socket at path, readable and writable by
// root only, replacing a stale socket left by an earlier agent.
func ListenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("api socket %s: remove stale: %w", path, err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("api socket: %w", err)
	}
	return l, nil
}

// Serve serves the API without TLS on l (the node-local unix socket,
// where file permissions stand guard) until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, l)
}

// ServeTLS serves the API on l with mutual TLS: only clients that present
// the cluster's certificate are answered; others are refused and logged.
func (s *Server) ServeTLS(ctx context.Context, l net.Listener) error {
	return s.serve(ctx, tls.NewListener(l, RingServerTLS(s.keys())))
}

func (s *Server) serve(ctx context.Context, l net.Listener) error {
	log := s.logger().With("svc", "api", "addr", l.Addr().String())
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    64 << 10, // the API's requests carry small headers; bodies stream
		IdleTimeout:       time.Minute,
		ErrorLog:          newErrorLog(log),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	stopCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-stopCtx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	}()
	log.Info("api serving")
	err := srv.Serve(l)
	stop()
	<-done
	if !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api serve on %s: %w", l.Addr(), err)
	}
	return ctx.Err()
}

// Handler is the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/nodes", s.nodes)
	mux.HandleFunc("GET /v1/status", s.status)
	for pattern, h := range s.Routes {
		if lb, ok := h.(largeBody); ok {
			mux.Handle(pattern, lb.Handler)
			continue
		}
		mux.Handle(pattern, limitBody(h))
	}
	return keyGate(s.keys(), &s.certs, mux)
}

// MaxBody bounds the body of a request, but for those of LargeBody
// routes: a request, its job spec, a job's stdin held in a move, a CPU
// description fit in it many times over.
const MaxBody = 1 << 20

// LargeBody marks a route whose body is a stream of data (an upload, a
// job's images), which the API does not bound; its handler bounds what
// it stores.
func LargeBody(h http.Handler) http.Handler { return largeBody{h} }

type largeBody struct{ http.Handler }

// limitBody answers 413 to a body over MaxBody, once read that far.
func limitBody(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxBody {
			http.Error(w, fmt.Sprintf("request body of %d bytes: over the %d-byte limit", r.ContentLength, MaxBody), http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	out := s.Cluster.Nodes(s.now())
	if out == nil {
		out = []Node{}
	}
	WriteJSON(w, out)
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	keys := s.keys()
	st := Status{ClusterID: keys.ClusterID(), KeyID: keys.Current().ID(), Go: runtime.Version()}
	found := false
	for _, n := range s.Cluster.Nodes(s.now()) {
		switch n.State {
		case NodeAlive:
			st.Alive++
		case NodeSuspect:
			st.Suspect++
		default:
			st.Dead++
		}
		if n.Self {
			st.Node, found = n, true
		}
	}
	if !found {
		http.Error(w, "this node is not a member yet: try again in a few seconds", http.StatusServiceUnavailable)
		return
	}
	WriteJSON(w, st)
}

// WriteJSON answers with v as JSON; the agent's other services use it for
// the routes they add.
func WriteJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	e.Encode(v) // the client sees a truncated body if this fails
}

// newErrorLog routes net/http's connection errors into slog: failed TLS
// handshakes (plain HTTP, garbage, a wrong or missing certificate) become
// "refused API connection" warnings.
func newErrorLog(l *slog.Logger) *log.Logger {
	return log.New(errorLogWriter{l}, "", 0)
}

type errorLogWriter struct{ log *slog.Logger }

func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	if rest, ok := strings.CutPrefix(msg, "http: TLS handshake error from "); ok {
		from, reason, _ := strings.Cut(rest, ": ")
		w.log.Warn("refused API connection from "+from+": "+refusal(reason), "detail", reason)
		return len(p), nil
	}
	w.log.Warn(msg)
	return len(p), nil
}

// refusal says in a user's words why a TLS handshake failed.
func refusal(reason string) string {
	switch {
	case strings.Contains(reason, ErrWrongKey.Error()), strings.Contains(reason, "bad certificate"):
		return "it does not hold this cluster's key"
	case strings.Contains(reason, "didn't provide a certificate"):
		return "it presented no certificate"
	case strings.Contains(reason, "does not look like a TLS handshake"):
		return "not TLS (plain HTTP or garbage)"
	}
	return "TLS handshake failed"
}

// AddRoutes adds the routes of src to dst for Server.Routes. Two services
// claiming one pattern is a bug in the agent's wiring: it panics, naming
// the pattern, rather than letting one silently win.
func AddRoutes(dst, src map[string]http.Handler) {
	for pattern, h := range src {
		if _, dup := dst[pattern]; dup {
			panic("api: two services serve " + pattern)
		}
		dst[pattern] = h
	}
}
