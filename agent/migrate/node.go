//go:build linux

package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Why a target turned a job down before anything moved. A refusal wraps
// ErrRefused and, when the kind is known, one of the others, so that a
// caller (the balancer) waits the right while before asking the same
// target again.
var (
	ErrRefused = errors.New("nothing moved; the job runs where it was")
	// ErrTargetBusy: the target takes no job now (it runs or receives
	// more than the source counted, or it is blocked or draining).
	ErrTargetBusy = errors.New("target busy")
	// ErrCPUIncompatible: the target's CPU cannot run what jobs may use
	// on the source; that lasts as long as both machines do.
	ErrCPUIncompatible = errors.New("CPU incompatible")
	// ErrTargetUnreachable: the target did not answer, is not a live
	// member, or left the cluster during the migration.
	ErrTargetUnreachable = errors.New("target unreachable")
)

// Dest is the node a job moves to, as the job's source sees it: the agent
// implements it over its API (agent/jobs), tests in-process.
type Dest interface {
	// Admit opens the migration: the target checks that its CPU runs
	// what the job may use on the source (cpuinfo from CPUInfoDump; nil:
	// not checked) and that it still has room, and returns how many jobs
	// it then counts as running or arriving, this one included. A
	// refusal wraps ErrTargetBusy, ErrCPUIncompatible or
	// ErrTargetUnreachable.
	Admit(ctx context.Context, cpuinfo []byte) (load int, err error)
	// Sender stores each images archive on the target.
	Sender
	// Restore asks the target to restore the job from the images it
	// received and to hold it, restored and stopped: nil once it is.
	// While the source's copy is frozen, the held one must not run.
	Restore(ctx context.Context) error
	// Commit tells the target that its held copy may run: the source's
	// stays frozen until this answers, and goes once it has. It may be
	// asked more than once (an answer lost), so the target must take it
	// again. An answer that the target will not run it wraps
	// ErrNotCommitted.
	Commit(ctx context.Context) error
	// Started asks the job's home whether the target's copy has
	// started: for a commit that went unanswered, once the target's hold
	// is over.
	Started(ctx context.Context) (bool, error)
	// Discard tells the target to forget a migration that failed, and to
	// kill the copy it holds, if any. A target that hears neither Commit
	// nor Discard kills its held copy after a while of its own.
	Discard(ctx context.Context) error
}

// HoldTimeout is how long a target holds a restored, stopped copy for the
// source's Commit before it kills it. A source whose commit went
// unanswered keeps its own copy frozen longer than that before it may
// resume it.
const HoldTimeout = 2 * time.Minute

// Node is migration on one node: its CPU as CRIU describes it, the
// sources' CPUs it found able to run here or not, the lock that lets one
// CRIU dump run at a time, and the moves from and to here. Set the
// fields, then use it from any goroutine.
type Node struct {
	CriuPath   string       // "": "criu" from PATH
	WorkDir    string       // scratch for images, sent and received (a tmpfs on a node)
	SharedRoot string       // where the cluster's shared storage is mounted, for Check; "": api.SharedRoot
	Logger     *slog.Logger // nil: slog.Default()

	cpuMu  sync.Mutex
	cpuImg []byte
	fits   map[[sha256.Size]byte]cpuVerdict

	// dumpMu lets one CRIU dump run at a time: Debian's CRIU 3.17 fails
	// now and then to take a job's file descriptors from its parasite
	// ("Can't retrieve FD from socket") while another dump runs beside
	// it. Sending and restoring still overlap with the next dump.
	dumpMu sync.Mutex

	// restoreMu lets one CRIU restore at a time restore its files: in
	// swrk mode Debian's CRIU 3.17 names each task's transport socket
	// by its PID in the job's namespace and a run id it never sets
	// (CRIU issue #2499, fixed in 4.1), so two jobs restored at once,
	// each PID 1 of its own namespace, both bind "crtools-fd-1-0" in
	// the node's network namespace and one fails. It is held until
	// CRIU's post-restore point, by when every task has closed that
	// socket, not while the restored job is held for its commit.
	restoreMu sync.Mutex

	// Failpoints, when set (drift-lab's nodes only), is a directory
	// where a test holds a move at a named point by creating a file of
	// that name ("before-commit": the target holds the restored copy,
	// the source's is frozen), until it removes it.
	Failpoints string

	chainMu sync.Mutex
	chains  map[*Chain]bool // the checkpoint chains of jobs running here (chain.go)
	samples []costSample    // what checkpoints here cost, measured (chain.go)
}

// cpuVerdict is what checking one source CPU gave.
type cpuVerdict struct {
	err error // nil: it fits
	at  time.Time
}

// cpuRefusalTTL is how long a source CPU found unable to run here is
// refused without asking CRIU again: a node's CPU does not change while
// it runs, but a machine may be replaced under the same name.
const cpuRefusalTTL = 10 * time.Minute

func (n *Node) logger() *slog.Logger {
	if n.Logger != nil {
		return n.Logger
	}
	return slog.Default()
}

// CPUInfo is this node's CPU description (CPUInfoDump), dumped once: call
// it ahead, while the node is idle, and every migration from here has it
// at once.
func (n *Node) CPUInfo(ctx context.Context) ([]byte, error) {
	n.cpuMu.Lock()
	defer n.cpuMu.Unlock()
	if n.cpuImg != nil {
		return n.cpuImg, nil
	}
	img, err := CPUInfoDump(ctx, n.CriuPath)
	if err == nil {
		n.cpuImg = img
	}
	return img, err
}

// CheckCPU says whether a job from a node whose CPU img describes can run
// here; a refusal wraps ErrCPUIncompatible. Both answers are remembered
// (a refusal for cpuRefusalTTL): each CRIU run costs seconds on a busy
// node. An answer CRIU could not give (ctx ended) is not remembered.
func (n *Node) CheckCPU(ctx context.Context, img []byte) error {
	sum := sha256.Sum256(img)
	n.cpuMu.Lock()
	v, ok := n.fits[sum]
	n.cpuMu.Unlock()
	if ok && (v.err == nil || time.Since(v.at) < cpuRefusalTTL) {
		return v.err
	}
	err := CPUInfoCheck(ctx, n.CriuPath, img)
	var ce *CRIUError
	switch {
	case err == nil:
	case errors.As(err, &ce) && ctx.Err() == nil:
		err = fmt.Errorf("%w: %w", ErrCPUIncompatible, err)
	default:
		return err
	}
	n.cpuMu.Lock()
	if n.fits == nil {
		n.fits = map[[sha256.Size]byte]cpuVerdict{}
	}
	n.fits[sum] = cpuVerdict{err: err, at: time.Now()}
	n.cpuMu.Unlock()
	return err
}

// Job is what Move needs to know of a job.
type Job struct {
	Pid   int       // host PID of its root task: the init of its own PID namespace
	Stdio [3]uint64 // inodes of its stdin, stdout and stderr pipes, reconnected on the target
}

// Result is what a move did.
type Result struct {
	Stats
	TargetLoad int // the target's jobs when it admitted this one, this one included
}

// Move moves job to d: admission (Dest.Admit with this node's CPU), then
// Source.Migrate: pre-copy while the job runs, the freeze, the final
// images, and Dest.Restore, which leaves a copy held stopped on the
// target. Then, while the copy here is still frozen, Dest.Commit lets the
// target's run, and only once the target has said so does the copy here
// go. frozen is called while the job is frozen, before the final images
// go (the caller drains what the job wrote).
//
// A refusal at admission wraps ErrRefused and its kind. On any failure
// before the commit the job runs here still, d is told to Discard (with a
// deadline of its own), and the error names the step. The copy here
// resumes only when the target's cannot run: the target answered that it
// holds no copy, or no commit can have reached it (see commit). A commit
// whose fate nobody can tell loses the job (ErrCommitLost): neither copy
// runs.
func (n *Node) Move(ctx context.Context, job Job, d Dest, frozen func()) (Result, error) {
	var res Result
	img, err := n.CPUInfo(ctx)
	if err != nil {
		n.logger().Warn("cpu info dump: the target will not check its CPU", "err", err)
		img = nil
	}
	if res.TargetLoad, err = d.Admit(ctx, img); err != nil {
		return res, fmt.Errorf("%w: %w", err, ErrRefused)
	}
	if err := os.MkdirAll(n.WorkDir, 0o700); err != nil {
		return res, fmt.Errorf("migrate job %d: %w", job.Pid, err)
	}
	n.breakChains(job.Pid) // the pre-dumps reset the job's memory tracking
	src := &Source{CriuPath: n.CriuPath, WorkDir: n.WorkDir, Logger: n.Logger, Pid: job.Pid,
		SharedRoot: n.SharedRoot, StdioPipes: job.Stdio[:], dumpMu: &n.dumpMu}
	res.Stats, err = src.Migrate(ctx, d, frozen, func(ctx context.Context) error {
		if err := d.Restore(ctx); err != nil {
			return fmt.Errorf("restore on the target: %w", err)
		}
		held := time.Now()
		n.failpoint("before-commit")
		return commit(ctx, d, held, n.logger())
	})
	if err != nil {
		if errors.Is(err, ErrCommitLost) {
			return res, err
		}
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if derr := d.Discard(dctx); derr != nil {
			n.logger().Warn("discard the target's images", "err", derr)
		}
		cancel()
		return res, err
	}
	return res, nil
}

// failpoint waits at a named point of a move while a test holds it (see
// Node.Failpoints).
func (n *Node) failpoint(name string) {
	if n.Failpoints == "" {
		return
	}
	f := filepath.Join(n.Failpoints, name)
	if _, err := os.Stat(f); err != nil {
		return
	}
	n.logger().Warn("failpoint: the move waits until its file is removed", "failpoint", name, "file", f)
	for deadline := time.Now().Add(10 * time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(f); err != nil {
			break
		}
	}
	n.logger().Warn("failpoint: the move goes on", "failpoint", name)
}

// ErrCommitLost reports a move whose commit may have reached the target
// without an answer, and whose outcome nobody could tell: the copy here
// is gone, and the target's runs only if the commit got there.
var ErrCommitLost = errors.New("the target never answered whether it runs the job, and its home could not tell: the copy here is gone")

// ErrNotCommitted reports a move that the target did not take: it holds
// no copy that may run, so the job resumes on the source.
var ErrNotCommitted = errors.New("the target did not take the job")

// commitAttempt bounds one commit request.
const commitAttempt = 10 * time.Second

// unreachedCommit is how long a source keeps its copy frozen while no
// commit reaches the target (each attempt fails to connect) before it
// resumes it.
const unreachedCommit = 20 * time.Second

// commit tells d to run its held copy (restored at held) while the copy
// here is frozen, again and again until it answers. nil: the target runs
// it. ErrNotCommitted: the target's copy cannot run (it answered that it
// holds none, or no commit can have reached it: every attempt failed to
// connect, and the target left the cluster (ctx ended) or unreachedCommit
// passed), so the job may resume here.
// When an attempt may have reached the target unanswered, it goes on
// until the target's hold is surely over and then asks the job's home
// (Dest.Started) whether the target's copy started; ErrCommitLost if
// that cannot be told either.
func commit(ctx context.Context, d Dest, held time.Time, log *slog.Logger) error {
	deadline := held.Add(HoldTimeout + 10*time.Second)
	maybeDelivered := false
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitAttempt)
		err := d.Commit(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ErrNotCommitted):
			return err
		case !isDialError(err):
			maybeDelivered = true
		}
		if !maybeDelivered && ctx.Err() != nil {
			return fmt.Errorf("%w: it left the cluster before any commit reached it (%w)", ErrNotCommitted, err)
		}
		if !maybeDelivered && time.Since(held) > unreachedCommit {
			// Only this node commits: its copy can never run.
			return fmt.Errorf("%w: no commit reached it in %s: %w", ErrNotCommitted, time.Since(held).Round(time.Second), err)
		}
		if time.Now().After(deadline) {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitAttempt)
			started, serr := d.Started(sctx)
			cancel()
			switch {
			case serr != nil:
				return fmt.Errorf("%w: commit: %w; the home: %w", ErrCommitLost, err, serr)
			case started:
				log.Warn("commit: the target never answered, but the job's home says the target runs it")
				return nil
			default:
				return fmt.Errorf("%w: its hold is over and its copy never started (commit: %w)", ErrNotCommitted, err)
			}
		}
		log.Warn("commit: the target did not answer; asking again", "attempt", attempt, "err", err)
		time.Sleep(time.Second)
	}
}

// isDialError reports whether err is a request that failed before it was
// sent: no connection could be made.
func isDialError(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// Target is this node's side of the moves to it.
func (n *Node) Target() *Target {
	return &Target{CriuPath: n.CriuPath, WorkDir: n.WorkDir, Logger: n.Logger, restoreMu: &n.restoreMu}
}

// StdioInherit gives a restored job files in place of its stdio pipes on
// the source (inodes as Job.Stdio has them), for Target.Restore.
func StdioInherit(inodes [3]uint64, files [3]*os.File) []InheritFd {
	out := make([]InheritFd, 3)
	for i := range out {
		out[i] = InheritFd{Key: fmt.Sprintf("pipe:[%d]", inodes[i]), File: files[i]}
	}
	return out
}
