//go:build linux

package migrate

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// Incremental checkpoints. A Chain is the checkpoints of one job's stint
// on this node: a full dump, then dumps that hold only the pages the job
// dirtied since the dump before (CRIU's memory tracking: each dump resets
// the kernel's soft-dirty bits), each naming the one before as its parent.
// On the shared storage, in the job's directory:
//
//	ckpt-E-S.tar  one level: the images of dump S of stint E, as one tar
//	              (one file to create over the network, not thirty)
//	ckpt-E-S      the checkpoint: a small file naming, oldest first, the
//	              levels a restore reads: the full dump, then each increment
//
// Both are written under a .partial- name and renamed into place, the
// level first, so a checkpoint names only complete levels and one cut
// short never replaces a complete one. After each checkpoint the levels
// that no kept checkpoint names go (prune): the newest checkpoint, the one
// before it (its home may not have heard of the newest yet) and the one
// its home's record names are kept, with the levels they need. Every so
// often (MaxLevels, or the increments together outgrow the full dump) the
// next dump is a full one again, and the old chain goes once nothing
// names it.
//
// A dump outside the chain resets the same soft-dirty bits: a migration's
// pre-dumps, or its final dump when the move then failed and the job runs
// on here. Node.Move breaks the chain of the job it moves, so that the
// next checkpoint is a full one.

// levelName is a level's file name on the shared storage, and ckptName a
// checkpoint's.
var (
	levelName = regexp.MustCompile(`^ckpt-([0-9]+)-([0-9]+)\.tar$`)
	ckptName  = regexp.MustCompile(`^ckpt-([0-9]+)-([0-9]+)$`)
)

// defaultMaxLevels bounds a chain's length: a restore reads every level.
const defaultMaxLevels = 8

// Chain is the incremental checkpoints of one job's stint on this node.
// Make it with Node.NewChain; its methods are called from one goroutine.
type Chain struct {
	Dir       string // the job's directory on the shared storage
	Epoch     int    // the stint: its dumps are named ckpt-EPOCH-SEQ
	MaxLevels int    // levels before the next dump is a full one; 0: 8

	node   *Node
	pid    int
	local  string   // WorkDir/chain-EPOCH-PID: each level's images, its pages left out (a dump reads its parent's pagemaps only)
	levels []Level  // the newest checkpoint's chain, oldest (the full dump) first
	pub    []string // checkpoints published, newest last
	broken bool     // node.chainMu: a dump outside the chain reset the memory tracking
}

// Level is one dump of a chain.
type Level struct {
	Name  string // its file on the shared storage, ckpt-E-S.tar
	Bytes int64  // its images' size
}

// NewChain starts the chain of the job whose root task is pid, stint
// epoch, published in dir. Its scratch directories on this node that no
// live chain uses (an agent that died left them) go.
func (n *Node) NewChain(dir string, epoch, pid int) *Chain {
	c := &Chain{Dir: dir, Epoch: epoch, node: n, pid: pid,
		local: filepath.Join(n.WorkDir, fmt.Sprintf("chain-%d-%d", epoch, pid))}
	n.chainMu.Lock()
	defer n.chainMu.Unlock()
	if n.chains == nil {
		n.chains = map[*Chain]bool{}
	}
	n.chains[c] = true
	if old, _ := filepath.Glob(filepath.Join(n.WorkDir, "chain-*")); len(old) > 0 {
		live := map[string]bool{}
		for o := range n.chains {
			live[o.local] = true
		}
		for _, p := range old {
			if !live[p] {
				os.RemoveAll(p)
			}
		}
	}
	return c
}

// Close forgets the chain on this node (its stint ended); what it
// published stays.
func (c *Chain) Close() {
	c.node.chainMu.Lock()
	delete(c.node.chains, c)
	c.node.chainMu.Unlock()
	os.RemoveAll(c.local)
}

// breakChains makes the next checkpoint of pid's chains a full one: a dump
// outside them is about to reset the job's memory tracking.
func (n *Node) breakChains(pid int) {
	n.chainMu.Lock()
	defer n.chainMu.Unlock()
	for c := range n.chains {
		if c.pid == pid {
			c.broken = true
		}
	}
}

// Levels is the chain of the newest checkpoint, oldest first.
func (c *Chain) Levels() []Level { return slices.Clone(c.levels) }

// NextFull says whether the next dump is a full one, and why.
func (c *Chain) NextFull() (bool, string) {
	c.node.chainMu.Lock()
	broken := c.broken
	c.node.chainMu.Unlock()
	return nextFull(c.levels, broken, c.maxLevels())
}

func (c *Chain) maxLevels() int {
	if c.MaxLevels > 0 {
		return c.MaxLevels
	}
	return defaultMaxLevels
}

// nextFull is the rule: a full dump starts a chain, follows a dump outside
// it, and replaces a chain of max levels or whose increments together
// hold more than its full dump (a restore would read more than twice the
// job's memory).
func nextFull(levels []Level, broken bool, max int) (bool, string) {
	switch {
	case len(levels) == 0:
		return true, "first"
	case broken:
		return true, "a dump outside the chain (a move's, or one not published) reset the memory tracking"
	case len(levels) >= max:
		return true, fmt.Sprintf("chain of %d levels", len(levels))
	}
	var inc int64
	for _, l := range levels[1:] {
		inc += l.Bytes
	}
	if inc > levels[0].Bytes {
		return true, "the increments outgrew the full dump"
	}
	return false, ""
}

// Dump is one dump of a chain, written on this node, not yet published.
type Dump struct {
	Seq    int
	Full   bool
	Freeze time.Duration // the job was frozen this long
	Bytes  int64         // its images' size
	dir    string        // its images
}

// Dump dumps job, leaving it running, as dump seq of the chain: a full
// one or, when the chain allows, only what the job dirtied since the
// chain's newest level. The images are written on this node (WorkDir, a
// tmpfs) so that the job is frozen only while CRIU writes to memory.
// frozen is called while CRIU holds the job frozen, after its images are
// written. The caller publishes the dump (Publish) or drops it (Drop).
func (c *Chain) Dump(ctx context.Context, job Job, seq int, frozen func()) (*Dump, error) {
	if reasons, err := Check(job.Pid, c.node.SharedRoot, job.Stdio[:]); err != nil {
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	} else if len(reasons) > 0 {
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, &NotMigratableError{Reasons: reasons})
	}
	d := &Dump{Seq: seq}
	name := fmt.Sprintf("ckpt-%d-%d", c.Epoch, seq)
	d.dir = filepath.Join(c.local, name)
	if err := os.MkdirAll(c.local, 0o700); err != nil {
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	os.RemoveAll(d.dir)
	wd, err := os.Open(c.local)
	if err != nil {
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	defer wd.Close()
	d.Full, _ = c.NextFull()
	parent := ""
	if !d.Full {
		parent = "../" + strings.TrimSuffix(c.levels[len(c.levels)-1].Name, ".tar")
	}
	n := c.node
	src := &Source{CriuPath: n.CriuPath, Logger: n.Logger, Pid: job.Pid, dumpMu: &n.dumpMu}
	opts, img, err := src.opts(c.local, wd, name, parent)
	if err != nil {
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	defer img.Close()
	defer os.Remove(filepath.Join(c.local, name+".log"))
	opts.TrackMem = proto.Bool(true)
	opts.LeaveRunning = proto.Bool(true)
	if err := ctx.Err(); err != nil {
		os.RemoveAll(d.dir)
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	cr := criu.MakeCriu()
	if n.CriuPath != "" {
		cr.SetCriuPath(n.CriuPath)
	}
	var unlock sync.Once
	hook := &postDump{ctx: ctx, run: func(ctx context.Context) error {
		unlock.Do(src.unlockDump)
		if frozen != nil {
			frozen()
		}
		return nil
	}}
	// From here the job's soft-dirty bits are CRIU's: whatever happens,
	// this dump is the chain's newest or the next one is full.
	n.chainMu.Lock()
	c.broken = false
	n.chainMu.Unlock()
	src.lockDump()
	start := time.Now()
	stopWatch := watchDying(job.Pid, filepath.Join(c.local, name), src.logger().Warn)
	err = cr.Dump(opts, hook)
	stopWatch()
	unlock.Do(src.unlockDump)
	if !hook.done || err != nil {
		// CRIU resumes the tree itself; make sure (SIGCONT is harmless to
		// a running task).
		signalTree(job.Pid, syscall.SIGCONT)
		cerr := criuError("checkpoint dump", filepath.Join(c.local, name+".log"), err)
		c.Drop(d)
		return nil, fmt.Errorf("checkpoint job %d: %w", job.Pid, cerr)
	}
	d.Freeze = hook.end.Sub(start)
	d.Bytes, _ = dirSize(d.dir)
	return d, nil
}

// Drop forgets a dump that was not published: the next is a full one,
// since this one reset the memory tracking.
func (c *Chain) Drop(d *Dump) {
	os.RemoveAll(d.dir)
	c.node.chainMu.Lock()
	c.broken = true
	c.node.chainMu.Unlock()
}

// Published is what publishing a dump did.
type Published struct {
	Checkpoint string        // the checkpoint's file on the shared storage, for Target.Fetch
	Levels     int           // levels a restore from it reads
	ChainBytes int64         // their size
	Copy       time.Duration // copying the level to the shared storage, the job running
	CopyCPU    time.Duration // CPU time that copy used on this node
}

// Publish copies d to the shared storage as the chain's newest level,
// then writes the checkpoint that names its chain, each under a temporary
// name renamed into place once complete. The copy runs at the lowest CPU
// and I/O priority (idle): it uses what the node's jobs leave. keep names
// checkpoints that prune must leave (the one the job's home recorded).
// On failure nothing of d stays, and the next dump is a full one.
func (c *Chain) Publish(d *Dump, keep ...string) (Published, error) {
	var p Published
	levels := c.levels
	if d.Full {
		levels = nil
	}
	base := filepath.Base(d.dir)
	level := Level{Name: base + ".tar", Bytes: d.Bytes}
	levels = append(slices.Clone(levels), level)
	// A stint's first checkpoint makes the job's directory if need be (the
	// job had none before); after that, a directory gone means its home
	// removed it, the job having ended: making it again would leave what
	// nobody removes.
	var err error
	if len(c.pub) == 0 {
		err = os.MkdirAll(c.Dir, 0o755)
	} else if _, err = os.Stat(c.Dir); errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w: the job's directory is gone (the job ended)", err)
	}
	if err != nil {
		c.Drop(d)
		return p, fmt.Errorf("publish checkpoint: %w", err)
	}
	t0 := time.Now()
	cpu, err := idle(func() error {
		return writeAtomic(filepath.Join(c.Dir, level.Name), func(w io.Writer) error { return tarLevel(w, d.dir) })
	})
	p.Copy, p.CopyCPU = time.Since(t0), cpu
	if err == nil {
		var list bytes.Buffer
		for _, l := range levels {
			fmt.Fprintln(&list, l.Name)
		}
		p.Checkpoint = filepath.Join(c.Dir, base)
		err = writeAtomic(p.Checkpoint, func(w io.Writer) error { _, err := w.Write(list.Bytes()); return err })
		if err != nil {
			os.Remove(filepath.Join(c.Dir, level.Name))
		}
	}
	if err != nil {
		c.Drop(d)
		return p, fmt.Errorf("publish checkpoint %s: %w", filepath.Join(c.Dir, base), err)
	}
	// The level's pages are on the shared storage now; the next dump
	// reads only the rest of its images.
	stripPages(d.dir)
	for _, l := range c.levels {
		if !slices.Contains(levels, l) {
			os.RemoveAll(filepath.Join(c.local, strings.TrimSuffix(l.Name, ".tar")))
		}
	}
	c.levels = levels
	c.pub = append(c.pub, base)
	p.Levels = len(levels)
	for _, l := range levels {
		p.ChainBytes += l.Bytes
	}
	if err := c.prune(keep); err != nil {
		c.node.logger().Warn("checkpoint: remove what no checkpoint needs", "dir", c.Dir, "err", err)
	}
	return p, nil
}

// Unpublish removes what the chain published: its job ended meanwhile.
// The levels of other stints stay for the job's home to remove.
func (c *Chain) Unpublish() {
	for _, name := range c.pub {
		os.Remove(filepath.Join(c.Dir, name))
	}
	for _, l := range c.levels {
		os.Remove(filepath.Join(c.Dir, l.Name))
	}
	c.pub, c.levels = nil, nil
	os.Remove(c.Dir) // if its home removed the rest already
}

// prune removes from the job's directory the checkpoints older than the
// one this chain published before its newest (its home has heard of that
// one), except keep; then every level that no checkpoint left names, and
// what publishing left half written. Nothing newer than the newest goes.
func (c *Chain) prune(keep []string) error {
	ents, err := os.ReadDir(c.Dir)
	if err != nil {
		return err
	}
	newest := c.pub[len(c.pub)-1]
	prev := ""
	if len(c.pub) > 1 {
		prev = c.pub[len(c.pub)-2]
	}
	var kept []string
	var levels []string
	for _, e := range ents {
		name := e.Name()
		switch {
		case ckptName.MatchString(name):
			if prev == "" || name == newest || name == prev || slices.Contains(keep, name) || !older(name, prev) {
				kept = append(kept, name)
			} else if err := os.Remove(filepath.Join(c.Dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		case levelName.MatchString(name):
			levels = append(levels, name)
		case strings.HasPrefix(name, ".partial-ckpt-"):
			os.RemoveAll(filepath.Join(c.Dir, name))
		}
	}
	need := map[string]bool{}
	for _, k := range kept {
		names, err := readCheckpoint(filepath.Join(c.Dir, k))
		if errors.Is(err, fs.ErrNotExist) {
			continue // its home dropped it meanwhile
		}
		if err != nil {
			return err // keep every level rather than guess
		}
		for _, n := range names {
			need[n] = true
		}
	}
	for _, l := range levels {
		if !need[l] && !slices.ContainsFunc(c.levels, func(x Level) bool { return x.Name == l }) {
			if err := os.Remove(filepath.Join(c.Dir, l)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// older says whether checkpoint a (ckpt-E-S) was taken before b.
func older(a, b string) bool {
	ea, sa := ckptSeq(a)
	eb, sb := ckptSeq(b)
	return ea < eb || ea == eb && sa < sb
}

func ckptSeq(name string) (epoch, seq int) {
	m := ckptName.FindStringSubmatch(name)
	if m == nil {
		return -1, -1
	}
	epoch, _ = strconv.Atoi(m[1])
	seq, _ = strconv.Atoi(m[2])
	return epoch, seq
}

// maxCheckpointFile bounds what readCheckpoint reads: a few level names.
const maxCheckpointFile = 64 << 10

// readCheckpoint reads the levels a checkpoint names, oldest first.
func readCheckpoint(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var names []string
	sc := bufio.NewScanner(io.LimitReader(f, maxCheckpointFile))
	for sc.Scan() {
		ln := strings.TrimSpace(sc.Text())
		if ln == "" {
			continue
		}
		if !levelName.MatchString(ln) {
			return nil, fmt.Errorf("%w: checkpoint %s names %q, not a level", ErrBadImage, path, ln)
		}
		names = append(names, ln)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: checkpoint %s names no level", ErrBadImage, path)
	}
	return names, nil
}

// writeAtomic writes dst through write into a temporary sibling, synced,
// then renames it into place.
func writeAtomic(dst string, write func(io.Writer) error) error {
	tmp := filepath.Join(filepath.Dir(dst), ".partial-"+filepath.Base(dst))
	os.RemoveAll(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 256<<10) // the 9P mount's msize: one request per write
	err = write(bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}

// tarLevel writes the files of the images directory dir as a tar; the
// parent link stays out (Target.Fetch links the levels itself).
func tarLevel(w io.Writer, dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, e := range ents {
		if e.Name() == "parent" {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: %s is not a file", dir, e.Name())
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.Name(), Size: info.Size(), Mode: 0o600, ModTime: info.ModTime()}); err != nil {
			return err
		}
		f, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return tw.Close()
}

// stripPages empties the page files of an images directory: what a later
// dump reads of its parent is the pagemaps, and only opens the pages.
func stripPages(dir string) {
	pages, _ := filepath.Glob(filepath.Join(dir, "pages-*.img"))
	for _, p := range pages {
		os.Truncate(p, 0)
	}
}

// Linux's I/O priority class "idle" for ioprio_set on one thread.
const (
	ioprioWhoProcess = 1
	ioprioClassIdle  = 3 << 13
)

// idle runs f on an OS thread of its own at the lowest CPU priority
// (SCHED_IDLE) and I/O priority (the idle class), so that it takes the
// CPU the node's jobs leave, and returns f's error and the CPU time the
// thread used. The thread never goes back to Go's scheduler: it ends with
// f. Work the kernel does elsewhere for f (the network's) is not counted.
func idle(f func() error) (cpu time.Duration, err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
		unix.SchedSetAttr(0, &attr, 0)
		unix.Syscall(unix.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(unix.Gettid()), ioprioClassIdle)
		var r0, r1 unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &r0)
		err = f()
		unix.Getrusage(unix.RUSAGE_THREAD, &r1)
		cpu = rusageCPU(r1) - rusageCPU(r0)
	}()
	<-done
	return cpu, err
}

func rusageCPU(r unix.Rusage) time.Duration {
	return time.Duration(r.Utime.Nano() + r.Stime.Nano())
}

// costSample is one checkpoint's size and what it cost a job.
type costSample struct {
	bytes int64
	cost  time.Duration
	at    time.Time
}

// Before a node has measured a checkpoint, one is taken to cost
// defaultCostBase plus its size at defaultCostRate, on the high side of
// what bench-checkpoint measured under QEMU's emulation, one CPU a node
// (a full dump of 5.2 MiB, copied as one file at idle priority to the
// head's 9P share, cost its CPU-bound job 0.77 s). The node keeps its
// costSamples newest checkpoints of the last costSampleTTL.
const (
	defaultCostBase = 500 * time.Millisecond
	defaultCostRate = 8 << 20 // bytes per second
	costSampleTTL   = 30 * time.Minute
	costSamples     = 16
)

// CostModel is what a checkpoint is expected to cost a job on a node:
// Base for any dump (freezing the job, CRIU's work on its tree, making
// the files), and PerMiB for each MiB of images it writes. A job that
// dirties little pays about Base for each increment; a full dump of a
// big one, mostly its size.
type CostModel struct {
	Base   time.Duration
	PerMiB time.Duration
}

// Cost is what a dump of bytes is expected to cost.
func (c CostModel) Cost(bytes int64) time.Duration {
	return c.Base + time.Duration(float64(c.PerMiB)*float64(bytes)/(1<<20))
}

// NoteCost records what a checkpoint of bytes (a full dump or an
// increment) cost a job here, for Cost.
func (n *Node) NoteCost(bytes int64, cost time.Duration) {
	if bytes <= 0 || cost < 0 {
		return
	}
	n.chainMu.Lock()
	defer n.chainMu.Unlock()
	n.samples = append(n.samples, costSample{bytes: bytes, cost: cost, at: time.Now()})
	if len(n.samples) > costSamples {
		n.samples = slices.Delete(n.samples, 0, len(n.samples)-costSamples)
	}
}

// Cost is what checkpoints are expected to cost a job here, fitted to
// the node's recent samples (fitCost) or, before any, the default.
func (n *Node) Cost() CostModel {
	n.chainMu.Lock()
	defer n.chainMu.Unlock()
	n.samples = slices.DeleteFunc(n.samples, func(s costSample) bool { return time.Since(s.at) > costSampleTTL })
	return fitCost(n.samples)
}

// EstimateCost is what a full checkpoint of a job with bytes of memory is
// expected to cost it here.
func (n *Node) EstimateCost(bytes int64) time.Duration { return n.Cost().Cost(bytes) }

// fitCost splits what samples cost into a fixed part and a part per byte.
// With sizes far enough apart (the largest at least twice the smallest:
// a full dump and increments), the fixed part is the least-squares
// line's; otherwise it is the default's. Either way it is at most the
// cheapest sample's cost, and the part per byte is then the least-squares
// slope through it, never below zero. No samples: the default.
func fitCost(samples []costSample) CostModel {
	def := CostModel{Base: defaultCostBase, PerMiB: time.Second * (1 << 20) / defaultCostRate}
	if len(samples) == 0 {
		return def
	}
	lo, hi, cheapest := samples[0].bytes, samples[0].bytes, samples[0].cost
	var mx, my float64 // means of bytes and seconds
	for _, s := range samples {
		lo, hi, cheapest = min(lo, s.bytes), max(hi, s.bytes), min(cheapest, s.cost)
		mx += float64(s.bytes) / float64(len(samples))
		my += s.cost.Seconds() / float64(len(samples))
	}
	base := def.Base.Seconds()
	if hi >= 2*lo {
		var sxx, sxy float64
		for _, s := range samples {
			dx := float64(s.bytes) - mx
			sxx += dx * dx
			sxy += dx * (s.cost.Seconds() - my)
		}
		base = my - sxy/sxx*mx
	}
	base = min(max(base, 0), cheapest.Seconds())
	var xx, xy float64 // the slope through (0, base)
	for _, s := range samples {
		x := float64(s.bytes)
		xx += x * x
		xy += x * (s.cost.Seconds() - base)
	}
	perByte := max(xy/xx, 0)
	return CostModel{Base: time.Duration(base * float64(time.Second)), PerMiB: time.Duration(perByte * (1 << 20) * float64(time.Second))}
}
