package labport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Server runs commands that arrive on the lab port, on the guest.
type Server struct {
	Logger *slog.Logger // nil: slog.Default()
	SysDir string       // "": /sys
	DevDir string       // "": /dev
}

// FindPort returns the device node of the virtio-serial port named name,
// looking it up in sysDir/class/virtio-ports/*/name.
func FindPort(sysDir, devDir, name string) (string, error) {
	ports, err := filepath.Glob(filepath.Join(sysDir, "class", "virtio-ports", "*", "name"))
	if err != nil {
		return "", err
	}
	for _, p := range ports {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, filepath.Base(filepath.Dir(p))), nil
		}
	}
	return "", ErrNotFound
}

// Run serves the lab port until ctx ends. It returns ErrNotFound at once
// when this machine has no lab port.
func (s *Server) Run(ctx context.Context) error {
	sys, dev := s.SysDir, s.DevDir
	if sys == "" {
		sys = "/sys"
	}
	if dev == "" {
		dev = "/dev"
	}
	path, err := FindPort(sys, dev, PortName)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open lab port %s: %w", path, err)
	}
	stop := context.AfterFunc(ctx, func() { f.Close() })
	defer func() {
		if stop() {
			f.Close()
		}
	}()
	s.logger().Info("lab port open", "dev", path)
	return s.Serve(ctx, f)
}

// Serve serves the port until ctx ends and a Read of port returns, or
// until a Read fails with an error other than io.EOF. A virtio-serial
// port reads end of file while no host is connected: each host connection
// is a session, and when it ends, the commands it started are hung up
// (SIGHUP, then SIGKILL), since nobody is left to see their output.
// Writes to port may block while no host is connected, as a
// virtio-serial port's do.
func (s *Server) Serve(ctx context.Context, port io.ReadWriter) error {
	instance := newID()
	out := newQueue(maxPortQueue)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := out.run(port); err != nil && ctx.Err() == nil {
			s.logger().Warn("lab port: write", "err", err)
		}
	}()
	defer wg.Wait()
	defer out.close()
	out.push(0, helloLine(frame{T: tHello, V: Version, Instance: instance}))
	fr := newFrameReader(port)
	for n := uint64(1); ; n++ {
		ss := &session{s: s, num: n, out: out, instance: instance, streams: map[uint64]*stream{}}
		fr.reset(port) // a partial line of the last session is no frame
		got, err := ss.serve(ctx, fr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("read lab port: %w", err)
		}
		if got {
			s.logger().Info("lab port: host disconnected", "session", n)
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollEOF):
		}
	}
}

// helloLine is a hello frame preceded by a newline, which ends any partial
// line the other end was left with.
func helloLine(f frame) []byte {
	return append([]byte{'\n'}, encode(f)...)
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// session is one host connection to the port.
type session struct {
	s        *Server
	num      uint64 // tags this session's frames in out
	out      *queue
	instance string

	mu      sync.Mutex
	streams map[uint64]*stream
	wg      sync.WaitGroup
}

// serve reads frames until the port reads end of file or fails, then
// hangs up the session's commands and waits for them. It reports whether
// anything was read.
func (ss *session) serve(ctx context.Context, fr *frameReader) (got bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		cancel() // hangs up every command of the session
		ss.wg.Wait()
		ss.out.purge(ss.num)
	}()
	for {
		f, err := fr.next()
		if errors.Is(err, errMalformed) {
			got = true
			ss.s.logger().Warn("lab port: dropped a line", "err", err)
			continue
		}
		if err != nil {
			return got, err
		}
		got = true
		ss.handle(ctx, f)
	}
}

func (ss *session) send(f frame) {
	if !ss.out.push(ss.num, encode(f)) {
		ss.s.logger().Warn("lab port: output queue full or closed; frame dropped", "type", f.T, "id", f.ID)
	}
}

func (ss *session) stream(id uint64) *stream {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.streams[id]
}

func (ss *session) handle(ctx context.Context, f frame) {
	if f.T == tHello {
		ss.out.push(ss.num, helloLine(frame{T: tHello, V: Version, Instance: ss.instance}))
		return
	}
	if f.T == tOpen {
		ss.mu.Lock()
		defer ss.mu.Unlock()
		if _, dup := ss.streams[f.ID]; dup || f.ID == 0 {
			ss.s.logger().Warn("lab port: dropped an open with a bad id", "id", f.ID)
			return
		}
		st := &stream{id: f.ID, ss: ss, stdin: newInbox(), output: newCredit(window), hup: make(chan struct{})}
		ss.streams[f.ID] = st
		ss.wg.Add(1)
		go func() {
			defer ss.wg.Done()
			ss.send(st.run(ctx, f))
			ss.mu.Lock()
			delete(ss.streams, f.ID)
			ss.mu.Unlock()
		}()
		return
	}
	st := ss.stream(f.ID)
	if st == nil {
		return // a stream that has ended, or another session's
	}
	switch f.T {
	case tData:
		if !st.stdin.push(f.Data) {
			ss.s.logger().Warn("lab port: stdin overran its window; hanging up", "id", f.ID)
			st.hangUp()
		}
	case tEOF:
		st.stdin.close()
	case tWindow:
		if f.FD != 0 && f.N > 0 {
			st.output.add(f.N)
		}
	case tSignal:
		if f.Sig > 0 && f.Sig < 65 {
			st.signal(syscall.Signal(f.Sig))
		}
	case tClose:
		st.hangUp()
	}
}

// stream is one command of a session.
type stream struct {
	id     uint64
	ss     *session
	stdin  *inbox  // what the host sent, for the command's stdin
	output *credit // the window of stdout and stderr toward the host

	mu       sync.Mutex
	pgid     int // the command's process group; 0 before it starts and once it is reaped
	exited   atomic.Bool
	timedOut atomic.Bool

	hup     chan struct{} // closed by hangUp
	hupOnce sync.Once
}

// hangUp asks the command to end because the host is gone, and has its
// output dropped, since nobody will take it.
func (st *stream) hangUp() {
	st.hupOnce.Do(func() {
		close(st.hup)
		st.output.kill()
	})
}

// signal sends sig to the command's process group while it runs.
func (st *stream) signal(sig syscall.Signal) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.pgid > 0 {
		syscall.Kill(-st.pgid, sig)
	}
}

// run runs the command of open frame f and returns its exit frame, after
// its last output has been sent.
func (st *stream) run(ctx context.Context, f frame) frame {
	exit := frame{T: tExit, ID: st.id}
	if len(f.Argv) == 0 {
		exit.Err = "empty command"
		return exit
	}
	cctx := ctx
	if f.Timeout > 0 {
		var cancel context.CancelFunc
		cctx, cancel = context.WithTimeout(ctx, time.Duration(f.Timeout)*time.Millisecond)
		defer cancel()
	}
	var pipes [3][2]*os.File // stdin, stdout, stderr: read end, write end
	for i := range pipes {
		r, w, err := os.Pipe()
		if err != nil {
			for _, p := range pipes[:i] {
				p[0].Close()
				p[1].Close()
			}
			exit.Err = err.Error()
			return exit
		}
		pipes[i] = [2]*os.File{r, w}
	}
	inR, inW := pipes[0][0], pipes[0][1]
	outR, outW := pipes[1][0], pipes[1][1]
	errR, errW := pipes[2][0], pipes[2][1]
	cmd := exec.Command(f.Argv[0], f.Argv[1:]...)
	cmd.Env = append(os.Environ(), f.Env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	st.ss.s.logger().Debug("lab port: exec", "id", st.id, "argv", f.Argv)
	err := cmd.Start()
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		exit.Err = err.Error()
		return exit
	}
	st.mu.Lock()
	st.pgid = cmd.Process.Pid
	st.mu.Unlock()
	// The session's end is the host's: it takes no more output.
	defer context.AfterFunc(ctx, st.hangUp)()

	var pumps sync.WaitGroup
	pumps.Add(3)
	go func() { defer pumps.Done(); st.pump(1, outR) }()
	go func() { defer pumps.Done(); st.pump(2, errR) }()
	go func() { defer pumps.Done(); st.feed(inW) }()

	waited := make(chan struct{})
	var watch sync.WaitGroup
	watch.Add(1)
	go func() {
		defer watch.Done()
		st.watch(ctx, cctx, waited)
	}()
	werr := cmd.Wait()
	close(waited)
	watch.Wait()
	st.mu.Lock()
	st.pgid = 0
	st.mu.Unlock()

	// Output the command wrote before it exited is still in the pipes; a
	// pipe that a background child keeps open ends after drainQuiet of
	// silence.
	st.exited.Store(true)
	outR.SetReadDeadline(time.Now().Add(drainQuiet))
	errR.SetReadDeadline(time.Now().Add(drainQuiet))
	st.stdin.kill()
	inW.Close() // unblocks a write to a stdin nobody reads
	pumps.Wait()
	st.output.kill()
	outR.Close()
	errR.Close()

	exit.TimedOut = st.timedOut.Load()
	var ee *exec.ExitError
	switch {
	case werr == nil:
	case errors.As(werr, &ee):
		ws, _ := ee.Sys().(syscall.WaitStatus)
		exit.Code = ee.ExitCode()
		if ws.Signaled() {
			exit.Code, exit.Sig = -1, int(ws.Signal())
		}
	default:
		exit.Err = werr.Error()
	}
	return exit
}

// watch kills the command's process group when its timeout passes, and
// hangs it up when the host goes away (the session ends or the host
// closes the stream), until waited is closed.
func (st *stream) watch(session, cmdCtx context.Context, waited <-chan struct{}) {
	select {
	case <-waited:
		return
	case <-st.hup:
	case <-cmdCtx.Done():
		if session.Err() == nil { // the timeout
			st.timedOut.Store(true)
			st.signal(syscall.SIGKILL)
			return
		}
	}
	st.signal(syscall.SIGHUP)
	st.signal(syscall.SIGCONT)
	select {
	case <-waited:
	case <-time.After(hangupGrace):
		st.signal(syscall.SIGKILL)
	}
}

// pump sends what the command writes to fd (1 or 2) to the host, within
// the stream's window. Once the host is gone it reads on and drops what it
// reads, so that the command is not stuck writing while it ends.
func (st *stream) pump(fd int, r *os.File) {
	buf := make([]byte, chunkSize)
	for {
		if st.exited.Load() {
			r.SetReadDeadline(time.Now().Add(drainQuiet))
		}
		n, err := r.Read(buf)
		for p := buf[:n]; len(p) > 0; {
			k := st.output.take(len(p))
			if k == 0 {
				break // the host is gone
			}
			st.ss.send(frame{T: tData, ID: st.id, FD: fd, Data: p[:k]})
			p = p[k:]
		}
		if err != nil {
			return
		}
	}
}

// feed writes what the host sends for stdin to the command, acknowledging
// each piece once written, and closes w at end of file. Once the command
// stops reading, the rest is acknowledged and dropped.
func (st *stream) feed(w *os.File) {
	defer w.Close()
	broken := false
	for {
		p, ok := st.stdin.pop()
		if !ok {
			return
		}
		if !broken {
			if _, err := w.Write(p); err != nil {
				broken = true
				w.Close()
			}
		}
		st.ss.send(frame{T: tWindow, ID: st.id, FD: 0, N: int64(len(p))})
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
