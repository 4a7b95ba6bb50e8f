package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// CheckpointConfig says what bench-checkpoint measures.
type CheckpointConfig struct {
	ImageDir string        // drift-image output (image.json); required
	Runs     int           // runs of each kind; 0: 3
	Work     time.Duration // how long the CPU-bound job runs with checkpoints off, about; 0: 45 s
	Taken    int           // checkpoints the 64 MB job is made long enough to take at the default interval; 0: 2
	MemoryMB int           // RAM per VM; 0: 1024 (the head keeps the checkpoints in memory)
	// Share holds each VM to this share of a host core, as bench-balance
	// does: the head's work of storing a checkpoint then comes out of its
	// own share, not the worker's, as on separate machines. 0: 0.6;
	// negative: the VMs are not held.
	Share   float64
	Timeout time.Duration // for the whole run; 0: 90 minutes
	Accel   lab.Accel
	Logger  *slog.Logger
}

// CheckpointResult is what one bench-checkpoint measured.
type CheckpointResult struct {
	Accel      lab.Accel
	Share      float64 // of a host core each VM was held to; 0: not held
	Iterations uint64  // drift-workload work -n, calibrated to Work
	Jobs       []CheckpointJob
	Recoveries []Recovery
	Taken      int           // checkpoints the 64 MB job's length was set by
	Probe      time.Duration // until the 64 MB job's Taken-th checkpoint, in a run of its own
	Model      string        // the worker's checkpoint cost model at the end (fixed part, part per MiB), from its log
}

// CheckpointJob is one kind of job, timed with checkpoints off and on.
type CheckpointJob struct {
	Name    string
	Argv    []string
	Off, On []time.Duration // wall time of drift run, per run
	Taken   []int           // checkpoints taken in each run with them on
	Full    int             // of them, full dumps (the others are increments)
	Freeze  []time.Duration // each checkpoint's freeze, over the runs
	Publish []time.Duration // each checkpoint's copy to /cluster, wall time
	CopyCPU []time.Duration // the CPU time each copy used on the node
	Lost    []time.Duration // what each checkpoint cost the job, as its node measured it
	Bytes   []int64         // each checkpoint's dump (a full one or an increment)
	PerRun  [][]ckLine      // the checkpoints of each run with them on
}

// Recovery is one power-off of the node a job ran on. Detection and
// restore are seen from the host by polling the head (each poll costs a
// lab port round trip, ~0.2 s); catch-up is read from the home's log.
type Recovery struct {
	Detect  time.Duration // power-off until the head shows the node dead
	Restore time.Duration // until drift ps shows the job running elsewhere
	CatchUp time.Duration // from the home's "job recovered" until its "caught up" (the job writes output not shown before)
	Redone  time.Duration // the restored checkpoint's age when the node went off: the work done again
	Levels  int           // the levels the restored checkpoint named: its full dump and the increments on it
}

// Checkpoint boots a 3-node lab (the head, two workers) and runs, on
// worker 2, a CPU-bound job and a 64 MB job dirtying 1 MB/s while it
// computes, each Runs times with checkpoints off and at the default
// interval, alternately; then, Runs times, powers worker 2 off under a
// checkpointed counter and times its recovery on another node.
func Checkpoint(ctx context.Context, cfg CheckpointConfig) (*CheckpointResult, error) {
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	if cfg.Work == 0 {
		cfg.Work = 45 * time.Second
	}
	if cfg.Taken == 0 {
		cfg.Taken = 2
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 90 * time.Minute
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &CheckpointResult{}
	if res.Accel, err = resolveAccel(ctx, cfg.Accel, img, log); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "dckpt-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: work, Nodes: 3, MemoryMB: cfg.MemoryMB, Accel: res.Accel, Logger: log, DieWithParent: true})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer l.Down(context.WithoutCancel(ctx))
	if cfg.Share == 0 {
		cfg.Share = 0.6
	}
	if cfg.Share > 0 {
		q, err := limitCPU(fmt.Sprintf("drift-bench-%d", os.Getpid()), cfg.Share, l.PID(1), l.PID(2), l.PID(3))
		if err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		defer q.release()
		res.Share = cfg.Share
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	names, err := formed(ctx, l, 3)
	if err != nil {
		return nil, err
	}
	worker := names[2]
	run := func(argv []string, every string) (time.Duration, error) {
		args := append([]string{"drift", "run", "--node", worker, "--stay", "--checkpoint-every", every, "--"}, argv...)
		t0 := time.Now()
		r, err := l.Exec(ctx, 2, args...)
		d := time.Since(t0)
		if err == nil && r.ExitCode != 0 {
			err = fmt.Errorf("%v exited %d: %s", argv, r.ExitCode, r.Stderr)
		}
		return d, err
	}

	// Calibrate: iterations of drift-workload work that take cfg.Work,
	// the cost of starting a job (a run of true) taken off the probe's.
	const probe = 1 << 30
	start, err := run([]string{"true"}, "0")
	if err != nil {
		return nil, fmt.Errorf("bench: calibrate: %w", err)
	}
	d, err := run([]string{"drift-workload", "work", "-n", fmt.Sprint(probe)}, "0")
	if err != nil {
		return nil, fmt.Errorf("bench: calibrate: %w", err)
	}
	res.Iterations = uint64(float64(probe) * cfg.Work.Seconds() / max((d-start).Seconds(), 0.5))
	log.Info("calibrated", "probe_s", d.Seconds(), "iterations", res.Iterations)

	measure := func(j CheckpointJob) (CheckpointJob, error) {
		for i := range cfg.Runs {
			off, err := run(j.Argv, "0")
			if err != nil {
				return j, fmt.Errorf("bench: %s, checkpoints off, run %d: %w", j.Name, i+1, err)
			}
			j.Off = append(j.Off, off)
			before, _ := checkpointLines(ctx, l, worker)
			// --checkpoint-every with the default interval: --stay alone
			// would turn checkpoints off.
			on, err := run(j.Argv, api.DefaultCheckpointEvery.String())
			if err != nil {
				return j, fmt.Errorf("bench: %s, checkpoints on, run %d: %w", j.Name, i+1, err)
			}
			j.On = append(j.On, on)
			after, _ := checkpointLines(ctx, l, worker)
			taken := after[len(before):]
			j.Taken = append(j.Taken, len(taken))
			j.PerRun = append(j.PerRun, taken)
			for _, c := range taken {
				j.Freeze, j.Publish, j.Bytes = append(j.Freeze, c.freeze), append(j.Publish, c.publish), append(j.Bytes, c.bytes)
				j.CopyCPU, j.Lost = append(j.CopyCPU, c.copyCPU), append(j.Lost, c.lost)
				if c.full {
					j.Full++
				}
			}
			log.Info("run", "job", j.Name, "off_s", off.Seconds(), "on_s", on.Seconds(), "checkpoints", len(taken))
		}
		return j, nil
	}
	cpuJob, err := measure(CheckpointJob{Name: "CPU-bound", Argv: []string{"drift-workload", "work", "-n", fmt.Sprint(res.Iterations)}})
	if err != nil {
		return nil, err
	}
	res.Jobs = append(res.Jobs, cpuJob)

	// The 64 MB job's first checkpoint, a full dump, comes after twenty
	// times what the worker expects it to cost; the next when the
	// increment is paid off. How long it runs is measured first: a run
	// of its own with checkpoints on, until its Taken-th. Its runs are
	// then made a fifth longer than that.
	memArgv := func(n uint64) []string {
		return []string{"drift-workload", "work", "-n", fmt.Sprint(n), "-rss", "64M", "-dirty", "1M"}
	}
	if res.Probe, err = untilCheckpoints(ctx, l, worker, memArgv(math.MaxInt64), cfg.Taken); err != nil {
		return nil, fmt.Errorf("bench: 64 MB job, until %d checkpoints: %w", cfg.Taken, err)
	}
	res.Taken = cfg.Taken
	n := uint64(float64(res.Iterations) * max(1, 1.2*res.Probe.Seconds()/cfg.Work.Seconds()))
	log.Info("64 MB job", "checkpoints", cfg.Taken, "after_s", res.Probe.Seconds(), "iterations", n)
	memJob, err := measure(CheckpointJob{Name: "64 MB, 1 MB/s dirtied", Argv: memArgv(n)})
	if err != nil {
		return nil, err
	}
	res.Jobs = append(res.Jobs, memJob)
	if all, err := checkpointLines(ctx, l, worker); err == nil && len(all) > 0 {
		last := all[len(all)-1]
		res.Model = fmt.Sprintf("%.2f s a dump + %.3f s a MiB", last.base.Seconds(), last.perMiB.Seconds())
	}

	for i := range cfg.Runs {
		r, err := recoverOnce(ctx, l, names, log)
		if err != nil {
			return nil, fmt.Errorf("bench: recovery %d: %w", i+1, err)
		}
		res.Recoveries = append(res.Recoveries, r)
	}
	return res, nil
}

// ckLine is one "checkpoint" line of an agent's log.
type ckLine struct {
	freeze, publish, copyCPU, lost time.Duration
	bytes                          int64
	full                           bool
	base, perMiB                   time.Duration // the node's cost model after it
}

// checkpointLines reads the checkpoints node has logged, oldest first.
func checkpointLines(ctx context.Context, l *lab.Lab, node string) ([]ckLine, error) {
	out, err := l.ExecOK(ctx, 1, "drift", "logs", "-n", "5000", node)
	if err != nil {
		return nil, err
	}
	return parseCheckpointLines(out), nil
}

// parseCheckpointLines reads the "checkpoint" lines of an agent's log.
func parseCheckpointLines(out string) []ckLine {
	var lines []ckLine
	for _, ln := range strings.Split(out, "\n") {
		if !strings.Contains(ln, "msg=checkpoint ") {
			continue
		}
		var c ckLine
		for _, f := range strings.Fields(ln) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "freeze":
				c.freeze, _ = time.ParseDuration(v)
			case "publish":
				c.publish, _ = time.ParseDuration(v)
			case "copy_cpu":
				c.copyCPU, _ = time.ParseDuration(v)
			case "lost":
				c.lost, _ = time.ParseDuration(v)
			case "kind":
				c.full = v == "full"
			case "bytes":
				fmt.Sscan(v, &c.bytes)
			case "cost_base":
				c.base, _ = time.ParseDuration(v)
			case "cost_per_mib":
				c.perMiB, _ = time.ParseDuration(v)
			}
		}
		lines = append(lines, c)
	}
	return lines
}

// untilCheckpoints runs argv on node, checkpointed at the default
// interval, until node has logged taken checkpoints of it, then kills
// it. It returns how long the job ran until then (the host polls the
// node's log every 2 s).
func untilCheckpoints(ctx context.Context, l *lab.Lab, node string, argv []string, taken int) (time.Duration, error) {
	before, err := checkpointLines(ctx, l, node)
	if err != nil {
		return 0, err
	}
	args := append([]string{"drift", "run", "-d", "--node", node, "--stay", "--checkpoint-every", api.DefaultCheckpointEvery.String(), "--"}, argv...)
	t0 := time.Now()
	id, err := l.ExecOK(ctx, 2, args...)
	if err != nil {
		return 0, err
	}
	defer l.Exec(context.WithoutCancel(ctx), 1, "drift", "kill", "-s", "KILL", strings.TrimSpace(id))
	for {
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return 0, err
		}
		if now, err := checkpointLines(ctx, l, node); err == nil && len(now)-len(before) >= taken {
			return time.Since(t0), nil
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// recoverOnce runs a checkpointed counter on worker 2 (node 3), homed on
// worker 1, powers worker 2 off once it has a checkpoint and times the
// recovery, then boots worker 2 again.
func recoverOnce(ctx context.Context, l *lab.Lab, names []string, log *slog.Logger) (Recovery, error) {
	var r Recovery
	gone := names[2]
	id, err := l.ExecOK(ctx, 2, "drift", "run", "-d", "--node", gone, "--checkpoint-every", "10s", "--",
		"drift-workload", "counter", "-n", "3000", "-every", "100ms")
	if err != nil {
		return r, err
	}
	id = strings.TrimSpace(id)
	defer l.Exec(context.WithoutCancel(ctx), 1, "drift", "kill", "-s", "KILL", id)
	// Wait for an increment on a full dump: recovery reads the chain.
	for {
		if err := ctx.Err(); err != nil {
			return r, err
		}
		time.Sleep(time.Second)
		if j, err := l.Job(ctx, 1, id); err == nil && j.Checkpoint != nil && j.Checkpoint.Seq >= 2 {
			break
		}
	}
	time.Sleep(5 * time.Second) // work to redo
	// The checkpoint's time is the dead node's clock: read it against
	// the host's just before the power-off.
	clock, err := guestClock(ctx, l, 3)
	if err != nil {
		return r, err
	}
	if err := l.StopNode(ctx, 3); err != nil {
		return r, err
	}
	off := time.Now()
	if _, err := l.WaitMembers(ctx, []int{1}, func(_ int, st map[string]string) bool { return st[gone] == "dead" }); err != nil {
		return r, err
	}
	r.Detect = time.Since(off)
	for {
		j, err := l.Job(ctx, 1, id)
		if err == nil && j.Node != gone && j.State == api.JobRunning {
			break
		}
		if err == nil && j.Exit != nil {
			return r, fmt.Errorf("job %s ended instead of recovering: %+v", id, j)
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
	}
	r.Restore = time.Since(off) - r.Detect
	// The job's checkpoint is still the one it was restored from: the
	// new stint's first comes later.
	j, err := l.Job(ctx, 1, id)
	if err != nil || j.Checkpoint == nil {
		return r, fmt.Errorf("job %s after recovery: no checkpoint shown (%v)", id, err)
	}
	r.Redone = off.Add(clock).Sub(j.Checkpoint.At)
	levels, err := l.ExecOK(ctx, 1, "cat", j.Checkpoint.Dir)
	if err != nil {
		return r, fmt.Errorf("the checkpoint job %s was restored from: %w", id, err)
	}
	r.Levels = len(strings.Fields(levels))
	home := names[1]
	for {
		out, _ := l.ExecOK(ctx, 1, "drift", "logs", "-n", "400", home)
		recovered, caught := logTime(out, id, "msg=\"job recovered\""), logTime(out, id, "caught up")
		if !recovered.IsZero() && !caught.IsZero() {
			r.CatchUp = caught.Sub(recovered)
			break
		}
		if ctx.Err() != nil {
			return r, ctx.Err()
		}
		time.Sleep(time.Second)
	}
	log.Info("recovery", "detect_s", r.Detect.Seconds(), "restore_s", r.Restore.Seconds(), "catch_up_s", r.CatchUp.Seconds(), "redone_s", r.Redone.Seconds(), "levels", r.Levels)
	if err := l.StartNode(ctx, 3); err != nil {
		return r, err
	}
	if _, err := l.WaitReadyNode(ctx, 3); err != nil {
		return r, err
	}
	_, err = l.WaitMembers(ctx, []int{1, 2, 3}, lab.AllAlive(names...))
	return r, err
}

// guestClock is how far node's clock is ahead of the host's, read once
// (the exec's round trip, ~0.2 s, is the error).
func guestClock(ctx context.Context, l *lab.Lab, node int) (time.Duration, error) {
	t0 := time.Now()
	out, err := l.ExecOK(ctx, node, "date", "+%s.%N")
	if err != nil {
		return 0, err
	}
	mid := t0.Add(time.Since(t0) / 2)
	var sec float64
	if _, err := fmt.Sscan(strings.TrimSpace(out), &sec); err != nil {
		return 0, fmt.Errorf("node %d's clock: %q: %w", node, out, err)
	}
	return time.Unix(0, int64(sec*1e9)).Sub(mid), nil
}

// logTime is the time of the newest line about job of an agent's log
// (slog's text: time=... first) that holds sub; zero if none does.
func logTime(log, job, sub string) time.Time {
	lines := strings.Split(log, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		ln := lines[i]
		if !strings.Contains(ln, sub) || !slices.Contains(strings.Fields(ln), "job="+job) {
			continue
		}
		for _, f := range strings.Fields(ln) {
			if v, ok := strings.CutPrefix(f, "time="); ok {
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
					return t
				}
			}
		}
	}
	return time.Time{}
}

// Print writes the figures of r.
func (r *CheckpointResult) Print(w io.Writer) {
	fmt.Fprintf(w, "checkpoint cost, accel %s, drift run on a worker, median of %d (spread min-max):\n", r.Accel, len(r.Jobs[0].Off))
	if r.Share > 0 {
		fmt.Fprintf(w, "  each VM held to %.0f%% of a host core, as separate machines are (a node booted again for a recovery below is not)\n", r.Share*100)
	}
	for _, j := range r.Jobs {
		off, on := Median(j.Off), Median(j.On)
		fmt.Fprintf(w, "  %s (%s)\n", j.Name, strings.Join(j.Argv, " "))
		fmt.Fprintf(w, "    checkpoints off  %7.1f s  (%s)\n", off.Seconds(), spread(j.Off))
		fmt.Fprintf(w, "    default interval %7.1f s  (%s); %v checkpoints per run, %d of them full dumps\n", on.Seconds(), spread(j.On), j.Taken, j.Full)
		if off > 0 {
			fmt.Fprintf(w, "    slowdown         %+6.1f %%\n", (on.Seconds()/off.Seconds()-1)*100)
		}
		for i, run := range j.PerRun {
			fmt.Fprintf(w, "    run %d's checkpoints: %s\n", i+1, runSizes(run))
		}
		if len(j.Freeze) > 0 {
			fmt.Fprintf(w, "    each checkpoint: %s dumped; freeze median %.2f s (%s), copy to /cluster median %.2f s (%s) using %.2f s of CPU (%s)\n",
				sizes(j.Bytes), Median(j.Freeze).Seconds(), spread(j.Freeze), Median(j.Publish).Seconds(), spread(j.Publish), Median(j.CopyCPU).Seconds(), spread(j.CopyCPU))
			fmt.Fprintf(w, "    each checkpoint cost the job, as its node measured: median %.2f s (%s)\n", Median(j.Lost).Seconds(), spread(j.Lost))
		}
	}
	if r.Probe > 0 {
		fmt.Fprintf(w, "  the 64 MB job took its first %d checkpoints within %.0f s of starting, in a run of its own before these: its runs above do a fifth more work than that\n", r.Taken, r.Probe.Seconds())
	}
	if r.Model != "" {
		fmt.Fprintf(w, "  the worker's cost model at the end: %s\n", r.Model)
	}
	if len(r.Recoveries) == 0 {
		return
	}
	var det, rst, cu, red []time.Duration
	var seqs []int
	for _, x := range r.Recoveries {
		det, rst, cu, red = append(det, x.Detect), append(rst, x.Restore), append(cu, x.CatchUp), append(red, x.Redone)
		seqs = append(seqs, x.Levels)
	}
	fmt.Fprintf(w, "power-off to output resuming elsewhere (counter, --checkpoint-every 10s, restored from checkpoints of %v levels), median of %d (spread):\n", seqs, len(r.Recoveries))
	fmt.Fprintf(w, "  detection  %6.1f s  (%s)  power-off until the head shows the node dead (host polls, ~0.2 s)\n", Median(det).Seconds(), spread(det))
	fmt.Fprintf(w, "  restore    %6.1f s  (%s)  until drift ps shows it running elsewhere (host polls)\n", Median(rst).Seconds(), spread(rst))
	fmt.Fprintf(w, "  catch-up   %6.1f s  (%s)  from the home's \"job recovered\" until it writes output not shown before (home's log)\n", Median(cu).Seconds(), spread(cu))
	fmt.Fprintf(w, "  redone     %6.1f s  (%s)  the restored checkpoint's age at the power-off: catch-up redoes this work\n", Median(red).Seconds(), spread(red))
	fmt.Fprintf(w, "  total      %6.1f s        power-off until new output\n", (Median(det) + Median(rst) + Median(cu)).Seconds())
}

// runSizes lists one run's checkpoints: full dump or increment, and size.
func runSizes(run []ckLine) string {
	if len(run) == 0 {
		return "none"
	}
	var parts []string
	for _, c := range run {
		kind := "increment"
		if c.full {
			kind = "full"
		}
		parts = append(parts, fmt.Sprintf("%s %.1f MiB (cost %.2f s)", kind, float64(c.bytes)/(1<<20), c.lost.Seconds()))
	}
	return strings.Join(parts, ", ")
}

// sizes is the median and spread of checkpoint sizes, in MiB.
func sizes(bs []int64) string {
	ds := make([]time.Duration, len(bs))
	for i, b := range bs {
		ds[i] = time.Duration(b) // as a number to take the median of
	}
	lo, hi := slices.Min(bs), slices.Max(bs)
	return fmt.Sprintf("median %.1f MiB (%.1f-%.1f)", float64(Median(ds))/(1<<20), float64(lo)/(1<<20), float64(hi)/(1<<20))
}

func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	lo, hi := ds[0], ds[0]
	for _, d := range ds {
		lo, hi = min(lo, d), max(hi, d)
	}
	return fmt.Sprintf("%.2f-%.2f", lo.Seconds(), hi.Seconds())
}
