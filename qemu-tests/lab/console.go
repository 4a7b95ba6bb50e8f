package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"
)

// pollInterval is how often a console follower looks for new output once it
// has read everything; liveInterval is how often it checks that QEMU runs.
const (
	pollInterval = 20 * time.Millisecond
	liveInterval = 500 * time.Millisecond
)

// ErrExited means a node's QEMU process ended while something waited for it.
var ErrExited = errors.New("qemu exited")

// follower reads a console log as QEMU appends to it, line by line.
type follower struct {
	path    string
	f       *os.File
	off     int64 // bytes consumed into complete lines
	partial []byte
	alive   func() bool // nil: never check
	exited  bool        // alive reported false; what is left is the last output
}

// next returns the next complete console line (without "\r\n"), waiting for
// it. It fails when ctx ends or, after a final read, when alive reports the
// process gone.
func (fl *follower) next(ctx context.Context) (string, error) {
	buf := make([]byte, 32<<10)
	lastLive := time.Now()
	for {
		if i := bytes.IndexByte(fl.partial, '\n'); i >= 0 {
			line := string(fl.partial[:i])
			fl.partial = fl.partial[i+1:]
			fl.off += int64(i + 1)
			return strings.TrimRight(line, "\r"), nil
		}
		if fl.f == nil {
			f, err := os.Open(fl.path)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return "", err
			}
			if f != nil {
				if _, err := f.Seek(fl.off, io.SeekStart); err != nil {
					f.Close()
					return "", err
				}
				fl.f = f
			}
		}
		if fl.f != nil {
			n, err := fl.f.Read(buf)
			if n > 0 {
				fl.partial = append(fl.partial, buf[:n]...)
				continue
			}
			if err != nil && err != io.EOF {
				return "", err
			}
		}
		if fl.exited {
			if len(fl.partial) > 0 {
				line := string(fl.partial)
				fl.off += int64(len(fl.partial))
				fl.partial = nil
				return strings.TrimRight(line, "\r"), nil
			}
			return "", ErrExited
		}
		if fl.alive != nil && time.Since(lastLive) >= liveInterval {
			lastLive = time.Now()
			if !fl.alive() {
				// Read once more: QEMU may have written its last lines just before it ended.
				fl.exited = true
				continue
			}
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

func (fl *follower) close() {
	if fl.f != nil {
		fl.f.Close()
		fl.f = nil
	}
}

// waitLine follows the console log at path from byte offset off until a line
// matches re, and returns that line and the offset just past it.
func waitLine(ctx context.Context, path string, off int64, re *regexp.Regexp, alive func() bool) (string, int64, error) {
	fl := &follower{path: path, off: off, alive: alive}
	defer fl.close()
	for {
		line, err := fl.next(ctx)
		if err != nil {
			return "", fl.off, err
		}
		if re.MatchString(line) {
			return line, fl.off, nil
		}
	}
}

// tailLines returns the last n lines of the file at path, or a note saying
// why there are none.
func tailLines(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(no console output: %v)", err)
	}
	s := strings.ReplaceAll(string(b), "\r", "")
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return "(no console output)"
	}
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
