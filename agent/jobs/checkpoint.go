package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
	"golang.org/x/sys/unix"
)

// Checkpoints: the node that runs a job dumps it now and then, leaving it
// running, and publishes the images on the shared storage
// (SharedRoot/.drift/jobs/ID/ckpt-EPOCH-SEQ). Once published, the stint
// tells the job's home in its stream (FrameCheckpoint), after every byte
// of output the checkpoint counts: the home keeps the newest one and
// removes the one before. When the job's node dies, the home restores the
// newest on a live node (recover.go).

// checkpointRetry is how long a stint waits before it tries again a
// checkpoint that could not be taken (the job held something that cannot
// move, or there was no room).
const checkpointRetry = 30 * time.Second

// errNoCheckpoint prefixes why a checkpoint was not taken (the job holds
// something that cannot move, there is no room): nothing failed.
var errNoCheckpoint = errors.New("no checkpoint")

func streamIndex(t byte) int {
	if t == api.FrameStderr {
		return 1
	}
	return 0
}

func (m *Manager) checkpointEvery(spec api.JobSpec) time.Duration {
	switch {
	case spec.CheckpointEvery != 0:
		return spec.CheckpointEvery
	case m.CheckpointEvery != 0:
		return m.CheckpointEvery
	}
	return api.DefaultCheckpointEvery
}

// checkpointDir is where job id's checkpoints are published.
func (m *Manager) checkpointDir(id string) string {
	return filepath.Join(m.sharedRoot(), api.CheckpointDir, id)
}

// checkpoints checkpoints r's job until its stint ends. Each checkpoint
// is due once the job has run twenty times what it is expected to cost
// since the one before (or since the stint began), and not before the
// job's interval: checkpoints cost the job at most about
// api.CheckpointCost of its time. What a dump is expected to cost comes
// from the node's measured cost model (migrate.Node.Cost: a fixed part
// per dump and a part per MiB): a full dump copies the job's memory, an
// increment what the job dirtied since the dump before, at the rate it
// dirtied memory before (nextInterval).
func (m *Manager) checkpoints(r *runner) {
	every := m.checkpointEvery(r.spec)
	if every < 0 || r.spec.Stay && r.spec.CheckpointEvery == 0 {
		why := "checkpoints are off for this job (drift run --checkpoint-every 0)"
		if every >= 0 {
			why = "the job stays on its node (--stay): it is not checkpointed unless drift run --checkpoint-every asks"
		}
		r.note(m, why)
		return
	}
	ch := m.mig.NewChain(m.checkpointDir(r.id), r.epoch, r.pid)
	defer ch.Close()
	last := time.Now() // the end of the last checkpoint, or the stint's start
	var notBefore time.Time
	cpu := newJobCPU(r.pid)
	var dirty dirtyRate
	dirty.start(last)
	seq, told := 0, false
	for {
		var mem int64 // the job's memory: what a full dump copies
		if u, err := proc.TreeUsage(r.pid); err == nil {
			mem = int64(u.Anon)
		}
		full, _ := ch.NextFull()
		interval, est := nextInterval(every, m.mig.Cost(), full, mem, dirty)
		if full && seq == 0 && interval > every && !told {
			told = true
			r.note(m, fmt.Sprintf("the first checkpoint comes after %s of running: a full one is expected to cost the job %s here (%s of memory), and checkpoints take at most %.0f%% of its time",
				interval.Round(time.Second), est.Round(100*time.Millisecond), human(mem), api.CheckpointCost*100))
		}
		due := last.Add(interval)
		if due.Before(notBefore) {
			due = notBefore
		}
		if wait := time.Until(due); wait > 0 {
			select {
			case <-r.done:
				return
			case <-m.base.Done():
				return
			case <-time.After(min(wait, checkpointRecheck)):
			}
			continue // the job may have grown meanwhile: when is it due now?
		}
		if !r.migrating.CompareAndSwap(false, true) {
			notBefore = time.Now().Add(5 * time.Second) // a move is under way
			continue
		}
		seq++
		r.checkpointing.Store(true)
		ci, err := m.checkpoint(r, ch, seq, cpu)
		dirty.dumped(ci.dumpAt, ci.full, ci.dumpBytes, err == nil)
		r.checkpointing.Store(false)
		r.migrating.Store(false)
		if m.OnCheckpoint != nil {
			switch {
			case err == nil:
				m.OnCheckpoint("ok", ci.Freeze, ci.Bytes)
			case errors.Is(err, errNoCheckpoint):
				m.OnCheckpoint("skipped", 0, 0)
			default:
				m.OnCheckpoint("failed", 0, 0)
			}
		}
		last = time.Now()
		if err != nil {
			r.note(m, err.Error())
			notBefore = last.Add(max(every, checkpointRetry))
			continue
		}
		if ci.Dir != "" {
			m.tellHome(r, ci.CheckpointInfo)
		}
	}
}

// checkpointRecheck is how often a checkpoint not yet due is looked at
// again: the job's memory, and so what a full dump costs, changes.
const checkpointRecheck = 30 * time.Second

// dirtyRate follows how fast a job dirties its memory, from its dumps:
// an increment holds what the job wrote since the dump before it.
type dirtyRate struct {
	since time.Time // the last dump (its start), or the stint's start
	rate  float64   // bytes per second; 0: not known yet
	full  int64     // the size of the last full dump
}

func (d *dirtyRate) start(at time.Time) { d.since = at }

// dumped notes a dump of bytes started at at. The first increment's rate
// is not known until it is taken: the full dump before it, over the time
// the job ran before it, stands in (every page it holds was written
// since the stint began, so this errs high).
func (d *dirtyRate) dumped(at time.Time, full bool, bytes int64, ok bool) {
	if !ok || at.IsZero() {
		return // a dump not published: the next one is full
	}
	if secs := at.Sub(d.since).Seconds(); secs > 0 && (!full || d.rate == 0) {
		d.rate = float64(bytes) / secs
	}
	if full {
		d.full = bytes
	}
	d.since = at
}

// nextInterval is how long the job runs before its next checkpoint, and
// what that one is expected to cost: at least every, and long enough that
// the checkpoint costs at most api.CheckpointCost of it. A full dump
// copies mem bytes. An increment copies what the job dirties meanwhile,
// at its rate, up to its memory (mem, or before it is known the full
// dump's size): the interval T solves T = cost(rate*T) / CheckpointCost,
// and when no T does (the job dirties faster than the cost allows), the
// increment is taken as costly as a full dump.
func nextInterval(every time.Duration, c migrate.CostModel, full bool, mem int64, d dirtyRate) (time.Duration, time.Duration) {
	if full || d.full == 0 {
		est := c.Cost(mem)
		return max(every, costInterval(est)), est
	}
	limit := mem
	if limit <= 0 {
		limit = d.full
	}
	k := 1 / api.CheckpointCost
	perSec := c.PerMiB.Seconds() / (1 << 20) * d.rate // cost per second waited
	if k*perSec < 1 {
		t := k * c.Base.Seconds() / (1 - k*perSec)
		if d.rate*t <= float64(limit) {
			T := time.Duration(t * float64(time.Second))
			est := c.Cost(int64(d.rate * t))
			if T < every {
				est = c.Cost(min(int64(d.rate*every.Seconds()), limit))
			}
			return max(every, T), est
		}
	}
	est := c.Cost(limit)
	return max(every, costInterval(est)), est
}

// costInterval is how long a job runs between two checkpoints that cost
// it cost each: api.CheckpointCost of its time.
func costInterval(cost time.Duration) time.Duration {
	return time.Duration(float64(cost) / api.CheckpointCost)
}

// jobCPU follows the CPU time a job's tree uses, to tell what a
// checkpoint took from it.
type jobCPU struct {
	pid   int
	at    time.Time
	ticks uint64 // CPU time at at, in 1/100 s
}

func newJobCPU(pid int) *jobCPU {
	c := &jobCPU{pid: pid}
	c.read()
	return c
}

// read moves the meter to now and returns the CPU seconds used since the
// last read and the seconds passed.
func (c *jobCPU) read() (cpu, wall float64) {
	now := time.Now()
	u, err := proc.TreeUsage(c.pid)
	if err != nil {
		return 0, 0
	}
	if !c.at.IsZero() && u.Ticks >= c.ticks {
		cpu, wall = float64(u.Ticks-c.ticks)/100, now.Sub(c.at).Seconds()
	}
	c.at, c.ticks = now, u.Ticks
	return cpu, wall
}

// jobLoss is what a checkpoint cost a job, in its own time: the job ran
// at rate CPUs before (cpuBefore over wallBefore seconds) and used cpu of
// them over the window the checkpoint took, which froze it for freeze.
// What it did not get done at its rate is the time it lost; a job that
// hardly runs (it waits for something) loses the freeze only.
func jobLoss(cpuBefore, wallBefore, cpu float64, window, freeze time.Duration) time.Duration {
	if wallBefore <= 0 || cpuBefore/wallBefore < 0.1 {
		return freeze
	}
	rate := cpuBefore / wallBefore
	lost := window - time.Duration(cpu/rate*float64(time.Second))
	return min(max(lost, freeze), window)
}

// note records why the job has no (fresh) checkpoint, and tells the home
// when that changes.
func (r *runner) note(m *Manager, why string) {
	r.ckMu.Lock()
	same := r.ckNote == why
	r.ckNote = why
	r.ckMu.Unlock()
	if same {
		return
	}
	m.log().Info("job not checkpointed", "job", r.id, "why", why)
	b, _ := json.Marshal(checkpointNotice{Note: why})
	r.out().output(api.FrameCheckpoint, b)
}

// checkpointNotice is FrameCheckpoint's payload: a checkpoint, or why
// there is none.
type checkpointNotice struct {
	api.CheckpointInfo
	Note string `json:"note,omitempty"`
}

// takenCheckpoint is a checkpoint, and what it cost the job.
type takenCheckpoint struct {
	api.CheckpointInfo
	lost      time.Duration
	dumpAt    time.Time // the dump started (the job's memory tracking starts again)
	full      bool
	dumpBytes int64 // the dump's size: a full one or an increment
}

// checkpoint takes checkpoint seq of r's job into its chain and publishes
// it; cpu measures what it took from the job.
func (m *Manager) checkpoint(r *runner, ch *migrate.Chain, seq int, cpu *jobCPU) (takenCheckpoint, error) {
	ci := takenCheckpoint{CheckpointInfo: api.CheckpointInfo{Epoch: r.epoch, Seq: seq, Stdio: r.inodes}}
	root := m.sharedRoot()
	if !isMountPoint(root) && m.SharedRoot == "" {
		return ci, fmt.Errorf("%w: the shared storage is not mounted on %s", errNoCheckpoint, m.Self)
	}
	full, why := ch.NextFull()
	need := int64(0)
	if levels := ch.Levels(); !full && len(levels) > 0 {
		need = levels[len(levels)-1].Bytes // about what the job dirties between two
	} else if u, err := proc.TreeUsage(r.pid); err == nil {
		need = int64(u.Anon) // what a full dump copies
	}
	if free, err := freeBytes(root); err == nil && free < need+need/4+(4<<20) {
		return ci, fmt.Errorf("%w: no room on %s: it needs about %s, %s is free (the job goes on without one)", errNoCheckpoint, root, human(need), human(free))
	}
	ctx, cancel := context.WithTimeout(m.base, 2*time.Minute)
	defer cancel()
	cpuBefore, wallBefore := cpu.read()
	t0 := time.Now()
	d, err := ch.Dump(ctx, migrate.Job{Pid: r.pid, Stdio: r.inodes}, seq, func() {
		if err := r.drain(5 * time.Second); err != nil {
			m.log().Warn("checkpoint: drain", "job", r.id, "err", err)
		}
		ci.At = time.Now()
		ci.Out, ci.Err = r.written[0].Load(), r.written[1].Load()
		r.stdinMu.Lock()
		ci.Stdin, _ = peekPipe(fmt.Sprintf("/proc/%d/fd/0", r.pid))
		ci.StdinEOF = r.stdinEOF.Load()
		r.stdinMu.Unlock()
	})
	if err != nil {
		var nm *migrate.NotMigratableError
		if errors.As(err, &nm) {
			return ci, fmt.Errorf("%w: cannot be checkpointed: %w", errNoCheckpoint, err)
		}
		return ci, fmt.Errorf("checkpoint failed: %w", err)
	}
	ci.Freeze = d.Freeze
	ci.dumpAt, ci.full, ci.dumpBytes = t0, d.Full, d.Bytes
	var keep []string
	if b, err := os.ReadFile(m.recordFile(r.id)); err == nil {
		var rec jobRecord
		if json.Unmarshal(b, &rec) == nil && rec.Checkpoint != nil {
			keep = append(keep, filepath.Base(rec.Checkpoint.Dir)) // what the home would restore now
		}
	}
	p, err := ch.Publish(d, keep...)
	if err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return ci, fmt.Errorf("%w: no room on %s (%s needed): the job goes on without one", errNoCheckpoint, root, human(d.Bytes))
		}
		return ci, err
	}
	ci.Dir, ci.Bytes, ci.Publish = p.Checkpoint, p.ChainBytes, p.Copy
	cpuDuring, _ := cpu.read()
	ci.lost = jobLoss(cpuBefore, wallBefore, cpuDuring, time.Since(t0), d.Freeze)
	m.mig.NoteCost(d.Bytes, max(ci.lost, d.Freeze+p.CopyCPU)) // the most it may cost another job
	model := m.mig.Cost()
	select {
	case <-r.done: // the job ended meanwhile: nobody will restore it
		ch.Unpublish()
		ci.Dir = ""
		return ci, nil
	default:
	}
	r.ckMu.Lock()
	shown := ci.CheckpointInfo
	r.ckpt, r.ckNote = &shown, ""
	r.ckMu.Unlock()
	kind := "increment"
	if full {
		kind = "full"
	}
	m.log().Info("checkpoint", "job", r.id, "seq", seq, "kind", kind, "bytes", d.Bytes, "levels", p.Levels, "chain_bytes", p.ChainBytes,
		"freeze", d.Freeze, "publish", p.Copy, "copy_cpu", p.CopyCPU, "lost", ci.lost, "why", why,
		"cost_base", model.Base.Round(time.Millisecond), "cost_per_mib", model.PerMiB.Round(time.Millisecond))
	return ci, nil
}

// tellHome sends the home the notice of a checkpoint, once the job may
// move again: a home that died meanwhile holds the write up until this
// node takes the job over (takeover.go).
func (m *Manager) tellHome(r *runner, ci api.CheckpointInfo) {
	b, _ := jsonNotice(ci)
	if err := r.out().output(api.FrameCheckpoint, b); err != nil {
		m.log().Warn("checkpoint: the home was not told", "job", r.id, "err", err)
	}
}

// checkpointState is the newest checkpoint of the job r runs, and why it
// has none or an old one.
func (r *runner) checkpointState() (*api.CheckpointInfo, string) {
	r.ckMu.Lock()
	defer r.ckMu.Unlock()
	return r.ckpt, r.ckNote
}

func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func jsonNotice(ci api.CheckpointInfo) ([]byte, error) {
	return json.Marshal(checkpointNotice{CheckpointInfo: ci})
}
