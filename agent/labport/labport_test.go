package labport

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeVM stands in for QEMU and the guest's virtio-serial port: a unix
// socket that serves one host connection at a time (QEMU's chardev), and
// guest ends (guestEnd) that read end of file while no host is connected
// and whose writes wait for one, as a virtio-serial port's do.
type fakeVM struct {
	sock string
	ln   net.Listener
	rx   chan []byte // host → guest
	done chan struct{}

	mu   sync.Mutex
	host net.Conn      // nil: no host connected
	gone chan struct{} // closed when host disconnects
}

func newFakeVM(t *testing.T) *fakeVM {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "port.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	v := &fakeVM{sock: sock, ln: ln, rx: make(chan []byte, 16), done: make(chan struct{})}
	go v.serve()
	t.Cleanup(v.stop)
	return v
}

func (v *fakeVM) serve() {
	for {
		c, err := v.ln.Accept()
		if err != nil {
			return
		}
		gone := make(chan struct{})
		v.mu.Lock()
		v.host, v.gone = c, gone
		v.mu.Unlock()
		buf := make([]byte, 64<<10)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				select {
				case v.rx <- bytes.Clone(buf[:n]):
				case <-v.done:
				}
			}
			if err != nil {
				break
			}
		}
		v.mu.Lock()
		v.host = nil
		close(gone)
		v.mu.Unlock()
		c.Close()
	}
}

// stop is QEMU exiting: the socket goes, and the host connection with it.
func (v *fakeVM) stop() {
	v.mu.Lock()
	defer v.mu.Unlock()
	select {
	case <-v.done:
		return
	default:
	}
	close(v.done)
	v.ln.Close()
	if v.host != nil {
		v.host.Close()
	}
}

func (v *fakeVM) dial(ctx context.Context) (io.ReadWriteCloser, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", v.sock)
}

// guestEnd is the guest's end of the port, as a server opens it.
type guestEnd struct {
	v       *fakeVM
	closed  chan struct{}
	once    sync.Once
	pending []byte
}

func (v *fakeVM) guest() *guestEnd { return &guestEnd{v: v, closed: make(chan struct{})} }

func (g *guestEnd) Close() error { g.once.Do(func() { close(g.closed) }); return nil }

func (g *guestEnd) current() (net.Conn, chan struct{}) {
	g.v.mu.Lock()
	defer g.v.mu.Unlock()
	return g.v.host, g.v.gone
}

func (g *guestEnd) Read(p []byte) (int, error) {
	if len(g.pending) > 0 {
		n := copy(p, g.pending)
		g.pending = g.pending[n:]
		return n, nil
	}
	host, gone := g.current()
	select {
	case <-g.closed:
		return 0, os.ErrClosed
	default:
	}
	if host == nil {
		return 0, io.EOF
	}
	select {
	case b := <-g.v.rx:
		n := copy(p, b)
		g.pending = b[n:]
		return n, nil
	case <-gone:
		return 0, io.EOF
	case <-g.closed:
		return 0, os.ErrClosed
	}
}

func (g *guestEnd) Write(p []byte) (int, error) {
	for {
		select {
		case <-g.closed:
			return 0, os.ErrClosed
		default:
		}
		if host, _ := g.current(); host != nil {
			host.Write(p) // QEMU drops what a departed host misses
			return len(p), nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// bench is a fake VM with a real Server on its guest end and a real
// Broker on its host end, as a lab node has.
type bench struct {
	vm         *fakeVM
	sock       string // the broker's
	stopServer func() // stops the server newBench started
	brokerDone chan error
}

func newBench(t *testing.T) *bench {
	t.Helper()
	b := &bench{vm: newFakeVM(t), sock: filepath.Join(t.TempDir(), "lab.sock"), brokerDone: make(chan error, 1)}
	b.stopServer = b.startServer(t)
	ln, err := net.Listen("unix", b.sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		b.brokerDone <- (&Broker{Dial: b.vm.dial, Logger: testLogger(t)}).Run(ctx, ln)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-b.brokerDone:
		case <-time.After(10 * time.Second):
			t.Error("the broker did not stop within 10s of its context's end")
		}
	})
	return b
}

// startServer starts a Server on a new guest end of the VM and returns a
// function that stops it as an agent's end would: the port closes.
func (b *bench) startServer(t *testing.T) (stop func()) {
	t.Helper()
	g := b.vm.guest()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		(&Server{Logger: testLogger(t)}).Serve(ctx, g)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			g.Close()
			cancel()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				t.Error("the server did not stop within 10s of its port's closing")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func timeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestExec(t *testing.T) {
	b := newBench(t)
	tests := []struct {
		name       string
		req        Request
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{"stdout", Request{Argv: []string{"echo", "hello", "lab"}}, "hello lab\n", "", 0},
		{"exit code", Request{Argv: []string{"sh", "-c", "echo oops >&2; exit 7"}}, "", "oops\n", 7},
		{"stdin", Request{Argv: []string{"cat"}, Stdin: []byte("in\x00bin")}, "in\x00bin", "", 0},
		{"no stdin", Request{Argv: []string{"cat"}}, "", "", 0},
		{"env", Request{Argv: []string{"sh", "-c", "echo $LABVAR"}, Env: []string{"LABVAR=x1"}}, "x1\n", "", 0},
		{"killed", Request{Argv: []string{"sh", "-c", "kill -KILL $$"}}, "", "", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Exec(timeout(t, 10*time.Second), b.sock, tt.req)
			if err != nil {
				t.Fatalf("Exec(%q) error: %v", tt.req.Argv, err)
			}
			if string(res.Stdout) != tt.wantOut || string(res.Stderr) != tt.wantErrOut || res.ExitCode != tt.wantCode {
				t.Errorf("Exec(%q) = (%q, %q, %d), want (%q, %q, %d)", tt.req.Argv,
					res.Stdout, res.Stderr, res.ExitCode, tt.wantOut, tt.wantErrOut, tt.wantCode)
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	b := newBench(t)
	ctx := timeout(t, 20*time.Second)
	if _, err := Exec(ctx, b.sock, Request{Argv: []string{"/no/such/program"}}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Exec(missing program) error = %v, want one naming the missing file", err)
	}
	if _, err := Exec(ctx, b.sock, Request{}); err == nil || !strings.Contains(err.Error(), "empty command") {
		t.Errorf("Exec(empty) error = %v, want empty command", err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if res, err := Exec(short, b.sock, Request{Argv: []string{"sleep", "30"}}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Exec(sleep 30) with a 300ms deadline = %+v, %v, want a deadline error", res, err)
	}
	if _, err := Exec(ctx, filepath.Join(t.TempDir(), "none.sock"), Request{Argv: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "is the VM running") {
		t.Errorf("Exec(no socket) error = %v, want a hint that the VM is not running", err)
	}
}

// lineReader reads a Run's output, line by line, as it comes.
type lineReader struct {
	*bufio.Reader
	w *io.PipeWriter
}

func newLineReader() *lineReader {
	r, w := io.Pipe()
	return &lineReader{bufio.NewReader(r), w}
}

func (lr *lineReader) line(t *testing.T) string {
	t.Helper()
	s, err := lr.ReadString('\n')
	if err != nil {
		t.Fatalf("read a line of output: %v", err)
	}
	return strings.TrimSuffix(s, "\n")
}

type runResult struct {
	st  ExitStatus
	err error
}

func startRun(ctx context.Context, sock string, c Command) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		st, err := Run(ctx, sock, c)
		if w, ok := c.Stdout.(*io.PipeWriter); ok {
			w.Close()
		}
		ch <- runResult{st, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan runResult, d time.Duration) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("Run did not return within %s", d)
		return runResult{}
	}
}

// TestRunStreams talks with a command while it runs: the test answers a
// line of output with a line of input, which works only if output
// arrives as it is written and input as it is sent.
func TestRunStreams(t *testing.T) {
	b := newBench(t)
	out := newLineReader()
	inR, inW := io.Pipe()
	var errOut bytes.Buffer
	ch := startRun(timeout(t, 20*time.Second), b.sock, Command{
		Argv:  []string{"sh", "-c", `echo ready; read x; echo "got $x"; read y; echo "got $y"; cat; echo oops >&2; exit 3`},
		Stdin: inR, Stdout: out.w, Stderr: &errOut,
	})
	for _, in := range []string{"one", "two"} {
		if got := out.line(t); !strings.HasPrefix(got, "ready") && !strings.HasPrefix(got, "got") {
			t.Fatalf("output %q, want ready or got ...", got)
		}
		io.WriteString(inW, in+"\n")
	}
	if got := out.line(t); got != "got two" {
		t.Errorf("output %q, want %q", got, "got two")
	}
	io.WriteString(inW, "rest\n")
	inW.Close() // cat ends at end of file
	if got := out.line(t); got != "rest" {
		t.Errorf("output %q, want %q", got, "rest")
	}
	r := wait(t, ch, 20*time.Second)
	if r.err != nil || r.st != (ExitStatus{Code: 3}) || errOut.String() != "oops\n" {
		t.Errorf("Run = %v, %v with stderr %q, want exit 3 and oops", r.st, r.err, errOut.String())
	}
}

// TestConcurrent runs commands that each wait for all the others to have
// started, beside one that streams megabytes both ways.
func TestConcurrent(t *testing.T) {
	b := newBench(t)
	ctx := timeout(t, 30*time.Second)
	dir := t.TempDir()
	names := []string{"a", "b", "c", "d"}
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			script := `touch "$D/$1"; for f in a b c d; do until [ -e "$D/$f" ]; do sleep 0.05; done; done; echo "$1 saw all"`
			res, err := Exec(ctx, b.sock, Request{Argv: []string{"sh", "-c", script, "sh", n}, Env: []string{"D=" + dir}})
			if err != nil || res.ExitCode != 0 || string(res.Stdout) != n+" saw all\n" {
				t.Errorf("Exec(%s) = %+v, %v, want it to see the others", n, res, err)
			}
		}()
	}
	big := make([]byte, 3<<20)
	rand.Read(big)
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err := Exec(ctx, b.sock, Request{Argv: []string{"cat"}, Stdin: big})
		if err != nil || res.ExitCode != 0 || !bytes.Equal(res.Stdout, big) {
			t.Errorf("Exec(cat of %d bytes) = %d bytes, exit %v, %v; want them back", len(big), len(res.Stdout), res.ExitCode, err)
		}
	}()
	wg.Wait()
}

// blockingWriter blocks every Write until released.
type blockingWriter struct {
	release chan struct{}
	n       int
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	<-w.release
	w.n += len(p)
	return len(p), nil
}

// TestSlowReader checks that a client that does not take its output holds
// up its own command only: another one on the same port still runs.
func TestSlowReader(t *testing.T) {
	b := newBench(t)
	ctx := timeout(t, 30*time.Second)
	const size = 4 << 20
	bw := &blockingWriter{release: make(chan struct{})}
	ch := startRun(ctx, b.sock, Command{Argv: []string{"head", "-c", strconv.Itoa(size), "/dev/zero"}, Stdout: bw})
	time.Sleep(300 * time.Millisecond) // let it fill its window
	res, err := Exec(ctx, b.sock, Request{Argv: []string{"echo", "still here"}})
	if err != nil || string(res.Stdout) != "still here\n" {
		t.Errorf("Exec beside a blocked reader = %+v, %v, want it to run", res, err)
	}
	close(bw.release)
	if r := wait(t, ch, 20*time.Second); r.err != nil || r.st.Code != 0 || bw.n != size {
		t.Errorf("Run(head -c %d) = %v, %v, %d bytes, want all of them", size, r.st, r.err, bw.n)
	}
}

// gone waits until no process has pid.
func gone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	t.Errorf("process %d still runs", pid)
}

func TestCancelInterrupts(t *testing.T) {
	b := newBench(t)
	out := newLineReader()
	var rest bytes.Buffer
	ctx, cancel := context.WithCancel(timeout(t, 20*time.Second))
	ch := startRun(ctx, b.sock, Command{
		Argv:   []string{"sh", "-c", `trap 'echo trapped; exit 7' INT; echo $$; while :; do sleep 0.1; done`},
		Stdout: out.w,
	})
	pid, _ := strconv.Atoi(out.line(t))
	go io.Copy(&rest, out)
	cancel()
	r := wait(t, ch, 10*time.Second)
	if !errors.Is(r.err, context.Canceled) || r.st.Code != 7 {
		t.Errorf("Run cancelled = %v, %v, want exit 7 from the trap and context.Canceled", r.st, r.err)
	}
	gone(t, pid)
}

func TestCancelHangsUp(t *testing.T) {
	b := newBench(t)
	out := newLineReader()
	ctx, cancel := context.WithCancel(timeout(t, 20*time.Second))
	ch := startRun(ctx, b.sock, Command{
		Argv:   []string{"sh", "-c", `trap '' INT; echo $$; while :; do sleep 0.1; done`},
		Stdout: out.w,
	})
	pid, _ := strconv.Atoi(out.line(t))
	go io.Copy(io.Discard, out)
	cancel()
	r := wait(t, ch, 10*time.Second)
	if !errors.Is(r.err, context.Canceled) {
		t.Errorf("Run of a command that ignores SIGINT, cancelled = %v, %v, want context.Canceled", r.st, r.err)
	}
	gone(t, pid)
}

// TestClientGone checks that a command whose client disconnects is hung up.
func TestClientGone(t *testing.T) {
	b := newBench(t)
	conn, err := net.Dial("unix", b.sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(encode(frame{T: tOpen, ID: 9, Argv: []string{"sh", "-c", "echo $$; exec sleep 100"}}))
	fr := newFrameReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := fr.next()
	if err != nil || f.T != tData || f.ID != 9 {
		t.Fatalf("first frame = %+v, %v, want data of stream 9", f, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(f.Data)))
	conn.Close()
	gone(t, pid)
}

// TestClientGoneFlooding checks the same of a command that floods its
// output: nobody takes it any more, and the stream must still end (the
// server stops, in cleanup, only once it has).
func TestClientGoneFlooding(t *testing.T) {
	b := newBench(t)
	conn, err := net.Dial("unix", b.sock)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write(encode(frame{T: tOpen, ID: 9, Argv: []string{"sh", "-c", "echo $$; exec yes"}}))
	fr := newFrameReader(conn)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	f, err := fr.next()
	if err != nil || f.T != tData || f.ID != 9 {
		t.Fatalf("first frame = %+v, %v, want data of stream 9", f, err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(f.Data), "\n", 2)[0]))
	time.Sleep(200 * time.Millisecond) // let it fill its window
	conn.Close()
	gone(t, pid)
	b.stopServer()
}

// started runs a command that prints its pid, then sleeps, and returns
// the pid once it has printed it.
func started(t *testing.T, ctx context.Context, sock string) (int, <-chan runResult) {
	t.Helper()
	out := newLineReader()
	ch := startRun(ctx, sock, Command{Argv: []string{"sh", "-c", "echo $$; exec sleep 100"}, Stdout: out.w})
	pid, _ := strconv.Atoi(out.line(t))
	go io.Copy(io.Discard, out)
	return pid, ch
}

// TestVMStops checks that commands running when the VM goes away end with
// ErrLost at once, and that later ones are told the VM is not running.
func TestVMStops(t *testing.T) {
	b := newBench(t)
	ctx := timeout(t, 30*time.Second)
	_, ch := started(t, ctx, b.sock)
	b.vm.stop()
	r := wait(t, ch, 10*time.Second)
	if !errors.Is(r.err, ErrLost) || !strings.Contains(r.err.Error(), "did it stop or reboot") {
		t.Errorf("Run when the VM stops = %v, %v, want ErrLost saying the VM may have stopped", r.st, r.err)
	}
	select {
	case err := <-b.brokerDone:
		b.brokerDone <- err
	case <-time.After(10 * time.Second):
		t.Fatal("the broker did not end when its VM went")
	}
	if _, err := Exec(ctx, b.sock, Request{Argv: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "is the VM running") {
		t.Errorf("Exec after the VM stopped: %v, want a hint that the VM is not running", err)
	}
}

// TestServerRestarts checks that commands running when the agent's end of
// the port restarts end with ErrLost, and that the new one serves.
func TestServerRestarts(t *testing.T) {
	b := newBench(t)
	ctx := timeout(t, 30*time.Second)
	pid, ch := started(t, ctx, b.sock)
	b.stopServer()
	b.startServer(t)
	r := wait(t, ch, 10*time.Second)
	if !errors.Is(r.err, ErrLost) || !strings.Contains(r.err.Error(), "restarted") {
		t.Errorf("Run when the server restarts = %v, %v, want ErrLost saying it restarted", r.st, r.err)
	}
	gone(t, pid)
	res, err := Exec(ctx, b.sock, Request{Argv: []string{"echo", "again"}})
	if err != nil || string(res.Stdout) != "again\n" {
		t.Errorf("Exec after the restart = %+v, %v, want it to run", res, err)
	}
}

func TestServeDropsGarbage(t *testing.T) {
	vm := newFakeVM(t)
	g := vm.guest()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); (&Server{Logger: testLogger(t)}).Serve(ctx, g) }()
	defer func() { g.Close(); cancel(); <-done }()

	conn, err := net.Dial("unix", vm.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "not json\n{\"argv\":[\"true\"]}\n\n{\"t\":\"open\",\"argv\":[\"true\"]}\n"+
		"{\"t\":\"bogus\",\"id\":3}\n{\"t\":\"data\",\"id\":4,\"d\":\"eA==\"}\n")
	conn.Write(encode(frame{T: tOpen, ID: 5, Argv: []string{"echo", "ok"}}))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	fr := newFrameReader(conn)
	var got []string
	for {
		f, err := fr.next()
		if err != nil {
			t.Fatalf("read frames: %v (got %q)", err, got)
		}
		if f.T == tHello {
			continue
		}
		got = append(got, f.T+" "+strconv.FormatUint(f.ID, 10)+" "+string(f.Data))
		if f.T == tExit {
			break
		}
	}
	if want := []string{"data 5 ok\n", "exit 5 "}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("Serve answered %q, want %q", got, want)
	}
}

func TestFrameReader(t *testing.T) {
	long := `{"t":"data","d":"` + strings.Repeat("A", maxFrame) + `"}`
	in := "\n" + long + "\n" + `{"t":"eof","id":2}` + "\n" + `{"t":"exit"`
	fr := newFrameReader(strings.NewReader(in))
	if _, err := fr.next(); !errors.Is(err, errMalformed) {
		t.Errorf("next() on a %d-byte line = %v, want errMalformed", len(long), err)
	}
	if f, err := fr.next(); err != nil || f.T != tEOF || f.ID != 2 {
		t.Errorf("next() = %+v, %v, want the eof frame of stream 2", f, err)
	}
	if f, err := fr.next(); err != io.EOF {
		t.Errorf("next() on a partial last line = %+v, %v, want io.EOF", f, err)
	}
}

func TestCapped(t *testing.T) {
	c := &capped{max: 4}
	c.Write([]byte("abc"))
	c.Write([]byte("def"))
	if got := c.buf.String(); got != "abcd" || !c.over {
		t.Errorf("capped = %q over=%v, want %q over=true", got, c.over, "abcd")
	}
}

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{"vport0p0": "other", "vport1p1": PortName} {
		d := filepath.Join(sys, "class", "virtio-ports", port)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644)
	}
	got, err := FindPort(sys, "/dev", PortName)
	if err != nil || got != "/dev/vport1p1" {
		t.Errorf("FindPort = %q, %v, want /dev/vport1p1", got, err)
	}
	if _, err := FindPort(t.TempDir(), "/dev", PortName); err != ErrNotFound {
		t.Errorf("FindPort(empty sysfs) error = %v, want ErrNotFound", err)
	}
}
