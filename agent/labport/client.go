package labport

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Run runs c on the guest behind the broker listening on sockPath, with
// its standard streams connected to c's as they flow, and returns how it
// ended. Any number of Runs may share a node at once.
//
// When ctx ends, Run sends SIGINT to the command's process group and
// waits up to two seconds for it to exit, then hangs it up (SIGHUP, then
// SIGKILL); if ctx has a deadline, the guest also kills the command when
// it passes. Run then returns an error wrapping ctx.Err(), with the exit
// status if the command exited. A command that could not start, or whose
// fate is unknown because the VM, the broker or the agent went away, is
// an error (ErrLost for the latter). A non-zero exit is not an error.
//
// Run returns without waiting for a Read of c.Stdin in progress (a
// terminal's may never return); what that Read returns is dropped.
func Run(ctx context.Context, sockPath string, c Command) (ExitStatus, error) {
	if err := ctx.Err(); err != nil {
		return ExitStatus{}, fmt.Errorf("run %q on the node: %w", c.Argv, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sockPath)
	if err != nil {
		return ExitStatus{}, fmt.Errorf("connect to lab port %s: %w (is the VM running? drift-lab status)", sockPath, err)
	}
	const id = 1
	open := frame{T: tOpen, ID: id, Argv: c.Argv, Env: c.Env}
	if dl, ok := ctx.Deadline(); ok {
		open.Timeout = max(time.Until(dl).Milliseconds(), 1)
	}
	line := encode(open)
	if len(line) > maxFrame {
		conn.Close()
		return ExitStatus{}, fmt.Errorf("run %q on the node: command line and environment are %d bytes, more than %d", c.Argv, len(line), maxFrame)
	}
	out := newQueue(maxClientQueue)
	send := func(f frame) { out.push(0, encode(f)) }
	out.push(0, line)

	var (
		wg     sync.WaitGroup
		done   = make(chan struct{})
		hungUp atomic.Bool
	)
	defer func() {
		close(done)
		conn.Close()
		out.close()
		wg.Wait()
	}()
	wg.Add(2)
	go func() {
		defer wg.Done()
		out.run(conn)
	}()
	go func() { // on ctx's end: SIGINT, then hang up
		defer wg.Done()
		select {
		case <-done:
			return
		case <-ctx.Done():
		}
		send(frame{T: tSignal, ID: id, Sig: int(syscall.SIGINT)})
		select {
		case <-done:
			return
		case <-time.After(stopGrace):
		}
		send(frame{T: tClose, ID: id})
		hungUp.Store(true)
		time.Sleep(50 * time.Millisecond) // let the close go out
		conn.SetReadDeadline(time.Now())
	}()

	stdin := newCredit(window)
	defer stdin.kill()
	if c.Stdin == nil {
		send(frame{T: tEOF, ID: id})
	} else {
		go copyStdin(c.Stdin, stdin, id, send)
	}

	fr := newFrameReader(conn)
	for {
		f, err := fr.next()
		if errors.Is(err, errMalformed) {
			continue
		}
		if err != nil {
			if hungUp.Load() {
				return ExitStatus{}, fmt.Errorf("run %q on the node: %w; it did not exit within %s of SIGINT and was hung up", c.Argv, ctx.Err(), stopGrace)
			}
			if errors.Is(err, io.EOF) {
				err = errors.New("the lab port's broker closed the connection (did the node stop? drift-lab status)")
			}
			return ExitStatus{}, fmt.Errorf("run %q on the node: %w: %w", c.Argv, ErrLost, err)
		}
		if f.ID != id {
			continue
		}
		switch f.T {
		case tData:
			w := c.Stdout
			if f.FD == 2 {
				w = c.Stderr
			}
			if w != nil {
				w.Write(f.Data)
			}
			send(frame{T: tWindow, ID: id, FD: f.FD, N: int64(len(f.Data))})
		case tWindow:
			if f.FD == 0 {
				stdin.add(f.N)
			}
		case tExit:
			if f.Err != "" {
				if f.Lost {
					return ExitStatus{}, fmt.Errorf("run %q on the node: %w: %s", c.Argv, ErrLost, f.Err)
				}
				return ExitStatus{}, fmt.Errorf("run %q on the node: %s", c.Argv, f.Err)
			}
			st := ExitStatus{Code: f.Code, Signal: syscall.Signal(f.Sig)}
			err := ctx.Err()
			if f.TimedOut { // the guest's clock passed ctx's deadline first
				err = context.DeadlineExceeded
			}
			if err != nil {
				return st, fmt.Errorf("run %q on the node: %w (%s)", c.Argv, err, st)
			}
			return st, nil
		}
	}
}

// copyStdin sends what r reads, within the stream's stdin window, then end
// of file (also after a read error).
func copyStdin(r io.Reader, cr *credit, id uint64, send func(frame)) {
	buf := make([]byte, chunkSize)
	for {
		n, err := r.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			k := cr.take(len(p))
			if k == 0 {
				return
			}
			send(frame{T: tData, ID: id, FD: 0, Data: bytes.Clone(p[:k])})
			p = p[k:]
		}
		if err != nil {
			send(frame{T: tEOF, ID: id})
			return
		}
	}
}

// String describes how the command ended: "exit 3", "killed by SIGKILL".
func (s ExitStatus) String() string {
	if s.Signal != 0 {
		return "killed by " + signalName(s.Signal)
	}
	return fmt.Sprintf("exit %d", s.Code)
}

func signalName(s syscall.Signal) string {
	for _, n := range []struct {
		s    syscall.Signal
		name string
	}{{syscall.SIGHUP, "SIGHUP"}, {syscall.SIGINT, "SIGINT"}, {syscall.SIGQUIT, "SIGQUIT"}, {syscall.SIGKILL, "SIGKILL"},
		{syscall.SIGPIPE, "SIGPIPE"}, {syscall.SIGTERM, "SIGTERM"}, {syscall.SIGSEGV, "SIGSEGV"}, {syscall.SIGABRT, "SIGABRT"}} {
		if n.s == s {
			return n.name
		}
	}
	return fmt.Sprintf("signal %d", int(s))
}

// Exec runs req on the guest behind the broker listening on sockPath and
// returns what the command did, its output collected (up to MaxOutput of
// each stream). It is Run with buffers: a non-zero exit is a Result, not
// an error; an ended ctx is an error.
func Exec(ctx context.Context, sockPath string, req Request) (*Result, error) {
	stdout, stderr := &capped{max: MaxOutput}, &capped{max: MaxOutput}
	c := Command{Argv: req.Argv, Env: req.Env, Stdout: stdout, Stderr: stderr}
	if len(req.Stdin) > 0 {
		c.Stdin = bytes.NewReader(req.Stdin)
	}
	st, err := Run(ctx, sockPath, c)
	if err != nil {
		return nil, err
	}
	return &Result{
		Stdout:    stdout.buf.Bytes(),
		Stderr:    stderr.buf.Bytes(),
		ExitCode:  st.Code,
		Truncated: stdout.over || stderr.over,
	}, nil
}

// capped is a buffer that keeps at most max bytes.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}
