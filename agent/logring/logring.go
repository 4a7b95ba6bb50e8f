// Package logring keeps the newest lines of driftd's log in memory, so
// that `drift logs NODE [-f]` can read a node's log over the API without a
// console: the agent's slog output and its console events are written to
// a Ring as well as to the console, and the Ring serves them.
package logring

import (
	"bytes"
	"fmt"
	"sync"
)

// Defaults for a Ring's bounds.
const (
	DefaultLines = 5000
	DefaultBytes = 1 << 20
	maxLine      = 16 << 10 // a longer line is cut
	followQueue  = 512      // lines a follower may fall behind before lines are dropped for it
)

// Ring is a bounded log: the newest lines written to it, at most MaxLines
// and MaxBytes. It is an io.Writer; a line ends at '\n' (a trailing '\r'
// is dropped). The zero Ring is ready to use.
type Ring struct {
	MaxLines int // 0: DefaultLines
	MaxBytes int // 0: DefaultBytes

	mu        sync.Mutex
	lines     []string // oldest first
	bytes     int
	partial   []byte
	followers map[*Follower]struct{}
}

// Write appends the complete lines in p; a line without its end is kept
// until the rest comes. It never blocks on a reader.
func (r *Ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			r.partial = append(r.partial, p...)
			if len(r.partial) > maxLine {
				r.add(string(r.partial))
				r.partial = r.partial[:0]
			}
			break
		}
		line := p[:i]
		if len(r.partial) > 0 {
			line = append(r.partial, line...)
			r.partial = r.partial[:0]
		}
		r.add(string(bytes.TrimSuffix(line, []byte("\r"))))
		p = p[i+1:]
	}
	return n, nil
}

func (r *Ring) add(line string) {
	if len(line) > maxLine {
		line = line[:maxLine] + " [cut]"
	}
	maxLines, maxBytes := r.MaxLines, r.MaxBytes
	if maxLines <= 0 {
		maxLines = DefaultLines
	}
	if maxBytes <= 0 {
		maxBytes = DefaultBytes
	}
	r.lines = append(r.lines, line)
	r.bytes += len(line)
	drop := 0
	for len(r.lines)-drop > maxLines || (r.bytes > maxBytes && len(r.lines)-drop > 1) {
		r.bytes -= len(r.lines[drop])
		drop++
	}
	if drop > 0 {
		r.lines = append(r.lines[:0:0], r.lines[drop:]...)
	}
	for f := range r.followers {
		f.push(line)
	}
}

// Tail returns the newest n lines, oldest first (n <= 0: all of them).
func (r *Ring) Tail(n int) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tail(n)
}

func (r *Ring) tail(n int) []string {
	lines := r.lines
	if n > 0 && n < len(lines) {
		lines = lines[len(lines)-n:]
	}
	return append([]string(nil), lines...)
}

// Follow returns the newest n lines (n <= 0: all) and a Follower that
// receives every line written after them, with none lost or repeated in
// between. Close the Follower when done.
func (r *Ring) Follow(n int) ([]string, *Follower) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := &Follower{r: r, c: make(chan string, followQueue)}
	if r.followers == nil {
		r.followers = map[*Follower]struct{}{}
	}
	r.followers[f] = struct{}{}
	return r.tail(n), f
}

// Follower receives a Ring's new lines. A follower that falls more than
// followQueue lines behind loses lines rather than slowing the writer; it
// is told how many in its next line.
type Follower struct {
	r       *Ring
	c       chan string
	mu      sync.Mutex
	dropped int
}

// push queues line, or counts it as dropped. The Ring's lock is held.
func (f *Follower) push(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dropped > 0 {
		select {
		case f.c <- fmt.Sprintf("drift logs: %d lines dropped here: this reader fell behind", f.dropped):
			f.dropped = 0
		default:
			f.dropped++
			return
		}
	}
	select {
	case f.c <- line:
	default:
		f.dropped++
	}
}

// Lines delivers the lines written since Follow.
func (f *Follower) Lines() <-chan string { return f.c }

// Close stops the deliveries.
func (f *Follower) Close() {
	f.r.mu.Lock()
	defer f.r.mu.Unlock()
	delete(f.r.followers, f)
}
