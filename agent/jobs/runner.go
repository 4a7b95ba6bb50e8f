package jobs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/jobinit"
	"golang.org/x/sys/unix"
)

// FrameMoved ends a stint whose job moved to another node: everything the
// job wrote on this node has been sent.
const FrameMoved byte = 'm'

// FrameLike, from the home to the stint that runs a job, says how much
// CPU time jobs like it have used (likeInfo): the node it runs on then
// knows how much work it has left.
const FrameLike byte = 'l'

// likeInfo is what a home knows of a job's like: the median CPU time
// of the jobs of the same command line homed there that ended since it
// started, and the CPU time its earlier stints used, in seconds.
type likeInfo struct {
	Like float64 `json:"like_cpu_s"`
	Used float64 `json:"used_cpu_s"`
}

// sink receives a stint's output, in order, and its end.
type sink interface {
	output(t byte, data []byte) error
	// end: exit nil means the job moved away, and ho says what became of
	// the signals the home sent the stint.
	end(exit *api.ExitStatus, ho handOver) error
}

// handOver is what a stint that ended as moved tells its home of the
// signals it sent: how many frames reached the stint, and the signals it
// kept for the job's next stint (they came while the job was moving).
// The home sends those again, and those that never reached the stint.
type handOver struct {
	Received int   `json:"received"`
	Kept     []int `json:"kept,omitempty"`
	// CPU is the CPU time, in seconds, the job's processes used in the
	// stint (the home adds up its stints, to tell how much work jobs
	// of its command take).
	CPU float64 `json:"cpu_s,omitempty"`
}

// runner is a job's process on this node: one stint.
type runner struct {
	id    string
	epoch int
	pid   int
	log   *slog.Logger

	stdin          *os.File // write end: what the home sends
	stdout, stderr *os.File // read ends
	inodes         [3]uint64

	spec          api.JobSpec // what the job runs, for the next node
	home          string      // the job's home node
	sink          sink
	moved         atomic.Bool  // set before the job is released after a move
	migrating     atomic.Bool  // a move or a checkpoint of the job is under way
	checkpointing atomic.Bool  // a checkpoint is
	arrived       time.Time    // when this stint began
	like, before  atomic.Int64 // likeInfo, in ns: 0 while the home has said nothing
	pending       atomic.Int64
	done          chan struct{}                                     // closed when the stint has ended
	wait          func() (syscall.WaitStatus, time.Duration, error) // also the CPU time the tree used
	stdinMu       sync.Mutex
	stdinEOF      atomic.Bool // the home sent the end of stdin: the next stint gets it too
	// While the job is frozen for a move, stdin is held: what the job had
	// not read is taken out of its pipe, and what the home sends is kept,
	// for the next stint (or put back if the move fails). stdinMu.
	stdinHeld bool
	unread    []byte // a copy of what the job had not read when it froze
	heldIn    []byte
	heldEOF   bool

	// While the job moves, the signals the home sends are kept, not
	// delivered: the copy here is frozen or about to be left behind. A
	// failed move delivers them here; a move that succeeds hands them
	// over (handOver) for the next stint. sigMu.
	sigMu   sync.Mutex
	sigHold bool
	sigKept []int
	sigRecv int // signal frames received from the home

	written [2]atomic.Int64 // bytes of stdout and stderr handed to the sink
	ckMu    sync.Mutex
	ckpt    *api.CheckpointInfo // the newest checkpoint this stint took
	ckNote  string              // why the job has no checkpoint now
}

// pipes are the job's standard streams: the job's ends and ours.
type pipes struct {
	jobIn, jobOut, jobErr *os.File
	in, out, errR         *os.File
}

func newPipes() (*pipes, error) {
	var p pipes
	var err error
	if p.jobIn, p.in, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("stdin pipe: %w", err)
	}
	if p.out, p.jobOut, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("stdout pipe: %w", err)
	}
	if p.errR, p.jobErr, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("stderr pipe: %w", err)
	}
	return &p, nil
}

// closeJobEnds closes the ends that belong to the job once it holds them.
func (p *pipes) closeJobEnds() {
	p.jobIn.Close()
	p.jobOut.Close()
	p.jobErr.Close()
}

func (p *pipes) closeAll() {
	p.closeJobEnds()
	p.in.Close()
	p.out.Close()
	p.errR.Close()
}

func inode(f *os.File) uint64 {
	var st unix.Stat_t
	if unix.Fstat(int(f.Fd()), &st) != nil {
		return 0
	}
	return st.Ino
}

// startProcess starts spec behind the job init in a new PID namespace and
// session, with its stdio on fresh pipes.
func startProcess(initCmd []string, spec api.JobSpec, dir string) (*exec.Cmd, *pipes, error) {
	p, err := newPipes()
	if err != nil {
		return nil, nil, err
	}
	args := append(append(append([]string(nil), initCmd...), "--dir="+dir, "--"), spec.Argv...)
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = spec.Env
	cmd.Dir = "/" // the init enters dir, not this process's fork: see jobinit.Run
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.jobIn, p.jobOut, p.jobErr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if err := cmd.Start(); err != nil {
		p.closeAll()
		return nil, nil, fmt.Errorf("start %s: %w", spec.Argv[0], err)
	}
	return cmd, p, nil
}

// newRunner runs a stint for a process that holds the job ends of p.
func newRunner(id string, epoch, pid int, p *pipes, wait func() (syscall.WaitStatus, time.Duration, error), s sink, log *slog.Logger) *runner {
	r := &runner{
		id: id, epoch: epoch, pid: pid, log: log,
		stdin: p.in, stdout: p.out, stderr: p.errR,
		inodes: [3]uint64{inode(p.jobIn), inode(p.jobOut), inode(p.jobErr)},
		sink:   s, done: make(chan struct{}), wait: wait, arrived: time.Now(),
	}
	p.closeJobEnds()
	go r.run()
	return r
}

func (r *runner) run() {
	defer close(r.done)
	var readers sync.WaitGroup
	for _, s := range []struct {
		f *os.File
		t byte
	}{{r.stdout, api.FrameStdout}, {r.stderr, api.FrameStderr}} {
		readers.Add(1)
		go func() {
			defer readers.Done()
			r.pump(s.f, s.t)
		}()
	}
	ws, cpu, err := r.wait()
	// The pipes reach EOF once every process of the job is gone (the
	// kernel ends them all with the namespace's init).
	readers.Wait()
	r.stdin.Close()
	if r.moved.Load() {
		ho := r.handOver()
		ho.CPU = cpu.Seconds()
		r.out().end(nil, ho)
		return
	}
	st := &api.ExitStatus{Code: jobinit.ExitCode(ws), CPU: cpu.Seconds()}
	if ws.Signaled() {
		st.Signal = int(ws.Signal())
	}
	if err != nil {
		st = &api.ExitStatus{Code: 255, Error: err.Error()}
	}
	r.log.Info("job exited", "job", r.id, "code", st.Code, "signal", st.Signal, "cpu", cpu.Round(time.Millisecond))
	r.out().end(st, handOver{})
}

// pump sends what the job writes on f to the sink.
func (r *runner) pump(f *os.File, t byte) {
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			r.pending.Add(int64(n))
			if serr := r.out().output(t, append([]byte(nil), buf[:n]...)); serr != nil {
				r.log.Warn("job output lost", "job", r.id, "bytes", n, "err", serr)
			}
			r.written[streamIndex(t)].Add(int64(n))
			r.pending.Add(-int64(n))
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				r.log.Warn("read job output", "job", r.id, "err", err)
			}
			return
		}
	}
}

// ended reports whether the stint ends within wait.
func (r *runner) ended(wait time.Duration) bool {
	select {
	case <-r.done:
		return true
	case <-time.After(wait):
		return false
	}
}

// drain waits until everything the (frozen) job wrote has been read and
// handed to the sink.
func (r *runner) drain(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		in1, _ := unix.IoctlGetInt(int(r.stdout.Fd()), unix.TIOCINQ)
		in2, _ := unix.IoctlGetInt(int(r.stderr.Fd()), unix.TIOCINQ)
		if in1 == 0 && in2 == 0 && r.pending.Load() == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("drain job output: %d bytes still unread after %s", in1+in2, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// control applies a frame from the home: stdin data, its end, a signal.
func (r *runner) control(f api.Frame) {
	switch f.Type {
	case api.FrameStdin:
		r.stdinMu.Lock()
		if r.stdinHeld {
			r.heldIn = append(r.heldIn, f.Data...)
			r.stdinMu.Unlock()
			return
		}
		_, err := r.stdin.Write(f.Data)
		r.stdinMu.Unlock()
		if err != nil {
			r.log.Debug("job stdin", "job", r.id, "err", err)
		}
	case api.FrameStdinEOF:
		r.stdinMu.Lock()
		if r.stdinHeld {
			r.heldEOF = true
			r.stdinMu.Unlock()
			return
		}
		r.stdinEOF.Store(true)
		r.stdin.Close()
		r.stdinMu.Unlock()
	case api.FrameSignal:
		if len(f.Data) == 1 && !r.keepSignal(int(f.Data[0])) {
			r.signal(syscall.Signal(f.Data[0]))
		}
	case FrameLike:
		var li likeInfo
		if json.Unmarshal(f.Data, &li) == nil {
			r.before.Store(int64(li.Used * float64(time.Second)))
			r.like.Store(int64(li.Like * float64(time.Second)))
		}
	}
}

// workLeft is how much more CPU time the job is expected to need, this
// stint having used ranHere: from what its home said of its like
// (balance.WorkLeft); 0: not known.
func (r *runner) workLeft(ranHere time.Duration) time.Duration {
	like := time.Duration(r.like.Load())
	if like <= 0 {
		return 0
	}
	return balance.WorkLeft(time.Duration(r.before.Load())+ranHere, []time.Duration{like})
}

// keepSignal counts a signal frame from the home, and keeps the signal if
// the job is moving (or has moved) away from here.
func (r *runner) keepSignal(sig int) bool {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	r.sigRecv++
	if r.sigHold {
		r.sigKept = append(r.sigKept, sig)
		r.log.Info("a signal for the job is kept until its move is over", "job", r.id, "signal", sig)
	}
	return r.sigHold
}

// holdSignals keeps the signals that come from now on, for the job's
// next stint, until releaseSignals.
func (r *runner) holdSignals() {
	r.sigMu.Lock()
	r.sigHold = true
	r.sigMu.Unlock()
}

// releaseSignals delivers the signals kept since holdSignals, in order,
// and those that come later: the move failed and the job runs here still.
func (r *runner) releaseSignals() {
	r.sigMu.Lock()
	kept := r.sigKept
	r.sigKept, r.sigHold = nil, false
	r.sigMu.Unlock()
	for _, sig := range kept {
		r.log.Info("a signal sent while the job was moving is delivered: the move failed", "job", r.id, "signal", sig)
		r.signal(syscall.Signal(sig))
	}
}

// handOver is what the stint says of its signals as it ends as moved.
func (r *runner) handOver() handOver {
	r.sigMu.Lock()
	defer r.sigMu.Unlock()
	return handOver{Received: r.sigRecv, Kept: slices.Clone(r.sigKept)}
}

// holdStdin is called while the job is frozen for a move: from now on
// the home's stdin is kept, and what the job has not read yet is copied
// out of its pipe (CRIU moves a pipe, not what is in it). heldStdin gives
// both to the move's target; releaseStdin lets the kept frames through if
// the move fails (what the pipe holds stays in it).
func (r *runner) holdStdin() {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	r.stdinHeld = true
	unread, err := peekPipe(fmt.Sprintf("/proc/%d/fd/0", r.pid))
	if err != nil {
		r.log.Warn("migrate: what the job has not read of its stdin stays behind", "job", r.id, "err", err)
	}
	r.unread = unread
}

// peekPipe copies what a pipe holds, through the path of one of its read
// ends, and leaves it there: tee(2) into a pipe of the same size.
func peekPipe(path string) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
	if err != nil || n == 0 {
		return nil, err
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		return nil, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if size, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0); err == nil {
		unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size)
	}
	copied, err := unix.Tee(fd, p[1], n, unix.SPLICE_F_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("tee: %w", err)
	}
	out := make([]byte, copied)
	for got := 0; got < int(copied); {
		k, err := unix.Read(p[0], out[got:])
		if err != nil {
			return out[:got], err
		}
		got += k
	}
	return out, nil
}

// heldStdin is the stdin for the job's next stint: what it had not read
// when it froze, then what the home sent since, and whether it has ended.
func (r *runner) heldStdin() ([]byte, bool) {
	r.stdinMu.Lock()
	defer r.stdinMu.Unlock()
	return append(append([]byte(nil), r.unread...), r.heldIn...), r.heldEOF || r.stdinEOF.Load()
}

// releaseStdin lets the home's stdin through again, the frames kept
// since holdStdin first: the move failed, the job runs on here. It does
// not wait for the job to read them.
func (r *runner) releaseStdin() {
	r.stdinMu.Lock()
	in, eof := r.heldIn, r.heldEOF
	r.heldIn, r.heldEOF, r.unread = nil, false, nil
	r.stdinHeld = false
	if len(in) == 0 && !eof {
		r.stdinMu.Unlock()
		return
	}
	go r.writeStdin(in, eof) // holds stdinMu until written: later frames follow
}

// writeStdin writes in to the job's stdin, then ends it if eof, and
// unlocks stdinMu, which the caller holds.
func (r *runner) writeStdin(in []byte, eof bool) {
	defer r.stdinMu.Unlock()
	if len(in) > 0 && !r.stdinEOF.Load() {
		if _, err := r.stdin.Write(in); err != nil {
			r.log.Warn("job stdin lost", "job", r.id, "bytes", len(in), "err", err)
		}
	}
	if eof && !r.stdinEOF.Load() {
		r.stdinEOF.Store(true)
		r.stdin.Close()
	}
}

// feedStdin starts the stint's stdin with what the last stint held: the
// frames the home sends wait until it is written.
func (r *runner) feedStdin(in []byte, eof bool) {
	if len(in) == 0 && !eof {
		return
	}
	r.stdinMu.Lock()
	go r.writeStdin(in, eof)
}

// signal sends sig to the job's init, which passes it on to the job.
// SIGKILL goes to the whole namespace: killing its init ends every process.
func (r *runner) signal(sig syscall.Signal) error {
	// Until the init has set up its signal handling, a signal would meet
	// PID 1's defaults (ignored, or the Go runtime's exit status 2). The
	// init starts the job only after that, so wait for its child.
	for deadline := time.Now().Add(2 * time.Second); sig != syscall.SIGKILL && len(Tree(r.pid)) < 2 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	return syscall.Kill(r.pid, sig)
}

// waitPID waits for a process that is this agent's child by PID (a job
// restored by CRIU as our child), and returns the CPU time it and the
// children it waited for used: the job's init reaps the whole tree.
func waitPID(pid int) func() (syscall.WaitStatus, time.Duration, error) {
	return func() (syscall.WaitStatus, time.Duration, error) {
		var ws syscall.WaitStatus
		var ru syscall.Rusage
		for {
			_, err := syscall.Wait4(pid, &ws, 0, &ru)
			if errors.Is(err, syscall.EINTR) {
				continue
			}
			return ws, cpuTime(&ru), err
		}
	}
}

// waitCmd waits for a process started with exec.
func waitCmd(cmd *exec.Cmd) func() (syscall.WaitStatus, time.Duration, error) {
	return func() (syscall.WaitStatus, time.Duration, error) {
		err := cmd.Wait()
		var ee *exec.ExitError
		if err == nil || errors.As(err, &ee) {
			ps := cmd.ProcessState
			return ps.Sys().(syscall.WaitStatus), ps.UserTime() + ps.SystemTime(), nil
		}
		return 0, 0, err
	}
}

func cpuTime(ru *syscall.Rusage) time.Duration {
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// moving reports whether a move of the job is under way (not a checkpoint).
func (r *runner) moving() bool { return r.migrating.Load() && !r.checkpointing.Load() }
