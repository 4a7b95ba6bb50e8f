//go:build linux

package migrate

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/crit"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"google.golang.org/protobuf/proto"
)

// Pre-copy stop rules, after P.Haul: stop after maxRounds pre-dumps, when
// a round wrote fewer than minPages pages (the rest fits in the freeze),
// or when a round did not shrink the dirty set by at least minShrinkPct
// percent against the round before (more rounds would not shorten the
// freeze: the job dirties memory as fast as it is sent).
const (
	maxRounds    = 8
	minPages     = 64
	minShrinkPct = 10
)

// criuLogLevel is CRIU's log verbosity: 2 is errors and warnings, enough
// for Explain; 4 is for debugging CRIU itself.
var criuLogLevel int32 = 2

// lastRound reports whether pre-copy should stop after round (1-based),
// which wrote pages, the round before having written prev, and why.
func lastRound(round int, pages, prev uint64) (bool, string) {
	switch {
	case round >= maxRounds:
		return true, fmt.Sprintf("%d rounds", maxRounds)
	case pages < minPages:
		return true, fmt.Sprintf("dirty set small (%d pages)", pages)
	case round > 1 && pages*100 > prev*(100-minShrinkPct):
		return true, fmt.Sprintf("dirty set stopped shrinking (%d pages after %d)", pages, prev)
	}
	return false, ""
}

// Sender carries one images directory, as a tar stream, to the target.
// name is "pre-1.tar" ... or "final.tar"; Send returns when the target has
// stored all of r (so a later dump may name it as parent), with the bytes
// sent.
type Sender interface {
	Send(ctx context.Context, name string, r io.Reader) (n int64, err error)
}

// Source migrates one job away from the node it runs on.
type Source struct {
	CriuPath string       // "": "criu" from PATH
	WorkDir  string       // scratch directory for images (a tmpfs on a node); one subdirectory per migration, removed after it
	Logger   *slog.Logger // nil: slog.Default()
	// Pid is the host PID of the job's root task: the init of the job's
	// own PID namespace, leader of its own session.
	Pid int
	// SharedRoot is where shared storage is mounted, for Check; "": api.SharedRoot.
	SharedRoot string
	// StdioPipes are the inodes of the job's stdio pipes, which the job
	// agent reconnects on the target (InheritFd); other pipes to the
	// outside keep the job from moving.
	StdioPipes []uint64
	// PreCopyMin is the resident memory below which a job skips pre-copy:
	// a pre-dump round costs a CRIU run of its own, more than sending a
	// small job's memory while it is frozen. 0: 8 MiB; negative: always
	// pre-copy.
	PreCopyMin int64

	dumpMu *sync.Mutex // held during each CRIU dump (Node's); nil: none
}

const defaultPreCopyMin = 8 << 20

// preCopy reports whether the job's memory (rss, when it could be read)
// is large enough for pre-copy.
func (s *Source) preCopy() (bool, int64) {
	least := s.PreCopyMin
	if least == 0 {
		least = defaultPreCopyMin
	}
	if least < 0 {
		return true, 0
	}
	rss, err := treeRSS(s.Pid)
	return err != nil || rss >= least, rss
}

// Stats describe one migration.
type Stats struct {
	Rounds     int           // pre-dump rounds
	PreBytes   int64         // bytes sent during pre-copy, job running
	FinalBytes int64         // bytes sent while the job was frozen
	Freeze     time.Duration // from the final dump's start until the job runs on the target (Node.Move: its commit): the job ran nowhere
	DumpTime   time.Duration // the final dump, until its images were written
	Total      time.Duration // the whole migration

}

func (s *Source) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Migrate moves the job: it checks it (ErrNotMigratable), pre-dumps its
// memory in rounds while it runs, each round's images sent as they are
// complete, then freezes it for the final dump. While the job is frozen
// it calls frozen (the job agent drains the job's stdio: nothing more will
// come), sends the final images and calls restore, which asks the target
// to restore the job, hold it stopped, and then run it (the two-phase
// commit, Move), and returns nil once the target runs it. Only then is the
// job on this node killed.
//
// On any failure (a CRIU error, Send, restore, the commit refused, ctx
// ending) the job is resumed on this node and the error names the step;
// a restore that fails with ErrCommitLost kills it here instead. The tree
// is held frozen by CRIU itself, inside its post-dump notification, so
// even if this process dies CRIU resumes the job (and the agent that
// starts again kills it: its output has nowhere to go).
func (s *Source) Migrate(ctx context.Context, snd Sender, frozen func(), restore func(ctx context.Context) error) (Stats, error) {
	start := time.Now()
	var st Stats
	if reasons, err := Check(s.Pid, s.SharedRoot, s.StdioPipes); err != nil {
		return st, fmt.Errorf("migrate job %d: %w", s.Pid, err)
	} else if len(reasons) > 0 {
		return st, fmt.Errorf("migrate job %d: %w", s.Pid, &NotMigratableError{Reasons: reasons})
	}
	dir, err := os.MkdirTemp(s.WorkDir, "migrate-")
	if err != nil {
		return st, fmt.Errorf("migrate job %d: %w", s.Pid, err)
	}
	defer os.RemoveAll(dir)
	work, err := os.Open(dir)
	if err != nil {
		return st, fmt.Errorf("migrate job %d: %w", s.Pid, err)
	}
	defer work.Close()
	log := s.logger().With("pid", s.Pid)

	c := criu.MakeCriu()
	if s.CriuPath != "" {
		c.SetCriuPath(s.CriuPath)
	}
	// One swrk session for the pre-dumps and the dump: CRIU keeps the
	// memory tracking state between them.
	if err := niced(criuNice, c.Prepare); err != nil {
		return st, fmt.Errorf("migrate job %d: start criu: %w", s.Pid, err)
	}
	cleanup := func() {
		if c == nil {
			return
		}
		if err := c.Cleanup(); err != nil {
			log.Debug("criu swrk ended", "err", err)
		}
		c = nil
	}
	defer cleanup()

	var prev uint64
	parent := ""
	precopy, rss := s.preCopy()
	if !precopy {
		log.Info("pre-copy skipped: small job", "rss", rss)
	}
	for precopy {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("migrate job %d: before pre-dump round %d: %w", s.Pid, st.Rounds+1, err)
		}
		st.Rounds++
		name := fmt.Sprintf("pre-%d", st.Rounds)
		opts, img, err := s.opts(dir, work, name, parent)
		if err != nil {
			return st, fmt.Errorf("migrate job %d: %w", s.Pid, err)
		}
		t0 := time.Now()
		s.lockDump()
		stopWatch := watchDying(s.Pid, dir, log.Warn)
		lower := raiseNice(s.Pid)
		err = c.PreDump(opts, nil)
		lower()
		stopWatch()
		s.unlockDump()
		img.Close()
		if err != nil {
			return st, fmt.Errorf("migrate job %d: %w", s.Pid, criuError("pre-dump round "+fmt.Sprint(st.Rounds), filepath.Join(dir, name+".log"), err))
		}
		// CRIU writes stats-dump into its work directory (dir), one per
		// round, overwritten by the next.
		pages := uint64(minPages) // unknown: do not stop for a small round
		if ds, err := crit.GetDumpStats(dir); err == nil {
			pages = ds.GetPagesWritten()
		} else {
			log.Warn("read pre-dump stats", "round", st.Rounds, "err", err)
		}
		t1 := time.Now()
		n, err := sendDir(ctx, snd, name+".tar", filepath.Join(dir, name))
		st.PreBytes += n
		if err != nil {
			return st, fmt.Errorf("migrate job %d: send %s: %w", s.Pid, name, err)
		}
		log.Info("pre-dump", "round", st.Rounds, "pages", pages, "bytes", n,
			"dump", time.Since(t0)-time.Since(t1), "send", time.Since(t1))
		parent = "../" + name
		if stop, why := lastRound(st.Rounds, pages, prev); stop {
			log.Info("pre-copy done", "why", why)
			break
		}
		prev = pages
	}

	opts, img, err := s.opts(dir, work, "final", parent)
	if err != nil {
		return st, fmt.Errorf("migrate job %d: %w", s.Pid, err)
	}
	defer img.Close()
	var freezeStart time.Time
	var unlock sync.Once
	hook := &postDump{ctx: ctx, run: func(ctx context.Context) error {
		// The images are written: another dump may start while this
		// one's are sent and restored.
		unlock.Do(s.unlockDump)
		st.DumpTime = time.Since(freezeStart)
		frozen()
		n, err := sendDir(ctx, snd, "final.tar", filepath.Join(dir, "final"))
		st.FinalBytes = n
		if err != nil {
			return fmt.Errorf("send final: %w", err)
		}
		return restore(ctx)
	}}
	s.lockDump()
	freezeStart = time.Now()
	stopWatch := watchDying(s.Pid, dir, log.Warn)
	lower := raiseNice(s.Pid) // back if the job resumes here
	err = c.Dump(opts, hook)
	lower()
	stopWatch()
	unlock.Do(s.unlockDump)
	committed := hook.done && hook.err == nil
	if hook.done && errors.Is(hook.err, ErrCommitLost) {
		// Neither resumed here nor known to run there: CRIU killed it.
		cleanup()
		signalTree(s.Pid, syscall.SIGKILL)
		return st, fmt.Errorf("migrate job %d: %w", s.Pid, hook.err)
	}
	if !committed {
		// Closing the swrk socket without answering the post-dump
		// notification makes CRIU resume the tree; wait for it, then
		// make sure (SIGCONT is harmless to a running task).
		cleanup()
		if rerr := signalTree(s.Pid, syscall.SIGCONT); rerr != nil {
			log.Warn("resume job", "err", rerr)
		}
		switch {
		case hook.err != nil:
			return st, fmt.Errorf("migrate job %d: job resumed here: %w", s.Pid, hook.err)
		case ctx.Err() != nil:
			return st, fmt.Errorf("migrate job %d: final dump: job resumed here: %w", s.Pid, ctx.Err())
		default:
			return st, fmt.Errorf("migrate job %d: job resumed here: %w", s.Pid, criuError("final dump", filepath.Join(dir, "final.log"), err))
		}
	}
	st.Freeze = hook.end.Sub(freezeStart)
	if err != nil {
		// The job runs on the target: it must not run here too.
		log.Warn("criu after a committed migration", "err", err)
	}
	cleanup()
	if err := signalTree(s.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("kill migrated job", "err", err)
	}
	st.Total = time.Since(start)
	log.Info("migrated", "rounds", st.Rounds, "pre_bytes", st.PreBytes, "final_bytes", st.FinalBytes,
		"freeze", st.Freeze, "dump", st.DumpTime, "total", st.Total)
	return st, nil
}

// lockDump waits for this node's other dumps, then clears what a dump
// cut short may have left in the way of this one.
func (s *Source) lockDump() {
	if s.dumpMu != nil {
		s.dumpMu.Lock()
	}
	s.clearScratch()
}

// parasiteScratch is the directory that CRIU's parasite makes in the
// working directory of the dumped tree's root task, to mount there a
// /proc of the task's PID namespace (a job's init sees the node's /proc),
// and removes again.
const parasiteScratch = "proc.crtools"

// clearScratch removes a parasite scratch directory that a dump cut short
// (its task killed mid-dump) left behind: while it is there, every dump
// of a task with that working directory fails ("Can't create a
// directory", then "Can't retrieve FD from socket"). The dumps of one
// node run one at a time, so none of them is using it now. Only an empty
// directory goes.
func (s *Source) clearScratch() {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", s.Pid))
	if err != nil {
		return
	}
	p := filepath.Join(cwd, parasiteScratch)
	if err := syscall.Rmdir(p); err == nil {
		s.logger().Warn("removed a scratch directory that a dump cut short left", "dir", p)
	}
}

func (s *Source) unlockDump() {
	if s.dumpMu != nil {
		s.dumpMu.Unlock()
	}
}

// opts are CRIU's options for a dump of s.Pid into dir/name (created),
// with its log in dir/name.log.
func (s *Source) opts(dir string, work *os.File, name, parent string) (*rpc.CriuOpts, *os.File, error) {
	p := filepath.Join(dir, name)
	if err := os.Mkdir(p, 0o700); err != nil {
		return nil, nil, err
	}
	img, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	// CRIU opens the directories through /proc/<our pid>/fd/N, so they
	// need not be inherited.
	opts := &rpc.CriuOpts{
		Pid:         proto.Int32(int32(s.Pid)),
		ImagesDirFd: proto.Int32(int32(img.Fd())),
		WorkDirFd:   proto.Int32(int32(work.Fd())),
		LogFile:     proto.String(name + ".log"),
		LogLevel:    proto.Int32(criuLogLevel),
		TrackMem:    proto.Bool(true),
	}
	if parent != "" {
		opts.ParentImg = proto.String(parent)
	}
	return opts, img, nil
}

// postDump runs the hand-over while CRIU holds the dumped tree frozen:
// an error (or no answer) makes CRIU resume the tree, success lets it
// kill the tree.
type postDump struct {
	criu.NoNotify
	ctx  context.Context
	run  func(ctx context.Context) error
	done bool
	err  error
	end  time.Time
}

func (p *postDump) PostDump() error {
	p.done = true
	p.err = p.run(p.ctx)
	p.end = time.Now()
	if errors.Is(p.err, ErrCommitLost) {
		return nil // CRIU kills the tree: it must not resume here
	}
	return p.err
}

// sendDir streams dir as a tar to snd under name.
func sendDir(ctx context.Context, snd Sender, name, dir string) (int64, error) {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := writeTar(pw, dir)
		pw.CloseWithError(err)
		done <- err
	}()
	n, err := snd.Send(ctx, name, pr)
	pr.CloseWithError(errors.New("send ended"))
	terr := <-done
	if err == nil && terr != nil {
		err = fmt.Errorf("tar %s: %w", dir, terr)
	}
	return n, err
}

// writeTar writes the files, directories and symlinks under dir to w.
func writeTar(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name = filepath.ToSlash(rel)
		h.Uname, h.Gname = "", ""
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
