//go:build linux

package migrate

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
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
	// Commit tells the target that the source's copy is gone: the held
	// copy may run. It is retried until it succeeds or commitTimeout
	// passes, so the target must take it more than once.
	Commit(ctx context.Context) error
	// Discard tells the target to forget a migration that failed, and to
	// kill the copy it holds, if any. A target that hears neither Commit
	// nor Discard kills its held copy after a while of its own.
	Discard(ctx context.Context) error
}

// commitTimeout bounds how long a source goes on telling the target to
// run a job whose own copy is gone. Targets hold a copy longer than that
// (HoldTimeout) before they give up on it.
const commitTimeout = 60 * time.Second

// HoldTimeout is how long a target holds a restored, stopped copy for the
// source's Commit before it kills it.
const HoldTimeout = 2 * commitTimeout

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

	chainMu sync.Mutex
	chains  map[*Chain]bool // the checkpoint chains of jobs running here (chain.go)
	sample  costSample      // what a checkpoint here cost, measured (chain.go)
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
// target. Only then does the copy here go, and Dest.Commit lets the
// target's run: at no instant do two copies run. frozen is called while
// the job is frozen, before the final images go (the caller drains what
// the job wrote).
//
// A refusal at admission wraps ErrRefused and its kind. On any failure
// before the commit the job runs here still, d is told to Discard (with a
// deadline of its own), and the error names the step. A commit that never
// reaches the target loses the job (ErrCommitLost): its copy here is gone
// and the target kills the one it holds.
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
	res.Stats, err = src.Migrate(ctx, d, frozen, d.Restore)
	if err != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if derr := d.Discard(dctx); derr != nil {
			n.logger().Warn("discard the target's images", "err", derr)
		}
		cancel()
		return res, err
	}
	released := time.Now()
	if err := commit(ctx, d, n.logger()); err != nil {
		return res, err
	}
	res.Freeze = time.Since(res.frozeAt) // the job runs again only now, on the target
	res.Total += time.Since(released)
	return res, nil
}

// ErrCommitLost reports a move whose commit never reached the target: the
// job's copy on the source is gone, and the target kills the one it holds.
var ErrCommitLost = errors.New("the target never heard that it may run the job: the job is lost")

// commit tells d to run its held copy, again and again until it answers
// or commitTimeout passes; ctx ending (the target died) does not stop it
// before that.
func commit(ctx context.Context, d Dest, log *slog.Logger) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	for {
		err := d.Commit(cctx)
		if err == nil {
			return nil
		}
		log.Warn("commit: the target did not answer; asking again", "err", err)
		select {
		case <-cctx.Done():
			return fmt.Errorf("%w: %w", ErrCommitLost, err)
		case <-time.After(time.Second):
		}
	}
}

// Target is this node's side of the moves to it.
func (n *Node) Target() *Target {
	return &Target{CriuPath: n.CriuPath, WorkDir: n.WorkDir, Logger: n.Logger}
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
