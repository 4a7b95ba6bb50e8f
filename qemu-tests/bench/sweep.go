package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/balance/sim"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// SweepConfig says what bench-sweep measures.
type SweepConfig struct {
	ImageDir string        // drift-image output; required
	Tasks    int           // equal CPU-bound tasks in the array; 0: 15
	Share    float64       // CPU share each VM is held to; 0: 0.6 (three VMs on two cores)
	TaskTime time.Duration // the run time of one task alone on a node, calibrated; 0: 10s
	Runs     int           // runs of each way; 0: 3
	Accel    lab.Accel
	Logger   *slog.Logger // nil: discard
	// SimTasks and SimNodes size the simulated pool; 0: 100,000 and 1000.
	SimTasks, SimNodes int
}

// SweepResult is what one bench-sweep measured.
type SweepResult struct {
	Accel       lab.Accel
	Tasks       int
	Share       float64
	Alone       time.Duration     // one task alone on a node
	Busy        [][]time.Duration // one task on each node at once, per node (node 1, the head, first); sampled before each round and after the last
	Ideal       time.Duration     // total work over total capacity, the capacity each node's median in Busy
	Array, Loop []time.Duration   // makespans: drift run --array; a loop of drift run -d
	ArrayMoves  []int             // migrations in each array run
	LoopMoves   []int
	Pool        SweepSim
}

// SweepSim is the simulator's sweep of a large pool.
type SweepSim struct {
	Nodes, Tasks    int
	Alpha, Shortest float64 // the Pareto law of task lengths (reference-core-seconds)
	Slow            float64 // share of the nodes at half speed
	Noise           float64
	// Per seed: the queue alone, with no task taken ahead ever given
	// back; the queue as the arrays service runs it; and the balancer too.
	Kept, Plain, Balanced []sim.Result
}

// Sweep boots a 3-node lab, holds each VM to the same CPU share, and
// runs, Runs times each and in turn, an array of equal CPU-bound tasks
// submitted with drift run --array from worker 1 and the same tasks
// started by a loop of drift run -d there; then simulates a sweep of
// heavy-tailed tasks over a large pool, with and without migration.
func Sweep(ctx context.Context, cfg SweepConfig) (*SweepResult, error) {
	if cfg.Tasks == 0 {
		cfg.Tasks = 15
	}
	if cfg.Share == 0 {
		cfg.Share = 0.6
	}
	if cfg.TaskTime == 0 {
		cfg.TaskTime = 10 * time.Second
	}
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	if cfg.SimTasks == 0 {
		cfg.SimTasks = 100000
	}
	if cfg.SimNodes == 0 {
		cfg.SimNodes = 1000
	}
	res := &SweepResult{Tasks: cfg.Tasks, Share: cfg.Share}
	b, log, down, err := equalLab(ctx, cfg.ImageDir, cfg.Accel, cfg.Share, cfg.Logger, &res.Accel)
	if err != nil {
		return nil, err
	}
	defer down()
	iters, alone, err := b.calibrate(ctx, cfg.TaskTime)
	if err != nil {
		return nil, err
	}
	res.Alone = alone
	workload := []string{"drift-workload", "work", "-n", fmt.Sprint(iters)}
	for run := range cfg.Runs {
		// Capacity is sampled before each round, as in bench-balance:
		// the ideal rests on the median of the samples.
		busy, err := b.capacity(ctx, iters)
		if err != nil {
			return nil, err
		}
		res.Busy = append(res.Busy, busy)
		if _, err := b.exec(ctx, "drift", "balance", "on"); err != nil {
			return nil, err
		}
		sctx, stop := context.WithCancel(ctx)
		b.sampleProcs(sctx, fmt.Sprintf("array%d", run+1), 10*time.Second)
		took, moves, err := b.array(ctx, 2, cfg.Tasks, workload)
		stop()
		if err != nil {
			return nil, err
		}
		res.Array, res.ArrayMoves = append(res.Array, took), append(res.ArrayMoves, moves)
		log.Info("bench-sweep: array", "took", took, "moves", moves)
		took, moves, err = b.loop(ctx, 2, cfg.Tasks, workload)
		if err != nil {
			return nil, err
		}
		res.Loop, res.LoopMoves = append(res.Loop, took), append(res.LoopMoves, moves)
		log.Info("bench-sweep: loop", "took", took, "moves", moves)
	}
	// Once more after the last round: each round is then bracketed by
	// samples, and each run can be set against the capacity measured
	// around it as well as against the median of all of them.
	busy, err := b.capacity(ctx, iters)
	if err != nil {
		return nil, err
	}
	res.Busy = append(res.Busy, busy)
	res.Ideal = idealOf(cfg.Tasks, medianEach(res.Busy))
	res.Pool = simulateSweep(cfg.SimNodes, cfg.SimTasks, cfg.Runs)
	return res, nil
}

// calibrate finds the work of a job that runs d alone on b.on, within
// a tenth, balancing off: starting and watching a job has overhead of its
// own, so one scaling undershoots, and it scales again until the time is
// close (a shorter job than asked gives each job's start more weight in
// the makespan). It returns the work and the time.
func (b *batch) calibrate(ctx context.Context, d time.Duration) (uint64, time.Duration, error) {
	iters := uint64(1 << 26)
	var alone time.Duration
	for range 7 {
		var err error
		if alone, _, err = b.run(ctx, 1, iters, false); err != nil {
			return 0, 0, err
		}
		if math.Abs(alone.Seconds()-d.Seconds()) <= d.Seconds()/10 {
			break
		}
		scale := math.Min(16, d.Seconds()/math.Max(alone.Seconds(), 0.1))
		iters = uint64(float64(iters) * scale)
	}
	return iters, alone, nil
}

// array submits n tasks of argv with drift run --array -d on node from
// and returns the time until the last task's job ended, and the moves
// its tasks made. It learns of the tasks' jobs and their ends from the
// consoles.
func (b *batch) array(ctx context.Context, from, n int, argv []string) (time.Duration, int, error) {
	start := time.Now()
	out, err := b.execOn(ctx, from, append([]string{"drift", "run", "-d", "--array", fmt.Sprintf("1-%d", n), "--"}, argv...)...)
	if err != nil {
		return 0, 0, err
	}
	id := strings.TrimSpace(out)
	if !api.IsArrayID(id) {
		return 0, 0, fmt.Errorf("bench: drift run -d --array printed %q, want an array id", out)
	}
	var ids []string
	for {
		// Every task has a job, and every job has ended (a task run
		// again has two).
		if ids = b.exits.tasksOf(id); len(ids) >= n {
			if ended, _, failed := b.exits.ended(ids); failed != "" {
				return 0, 0, fmt.Errorf("bench: array %s: %s", id, failed)
			} else if ended == len(ids) {
				break
			}
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	took, moves, err := b.finish(ctx, start, ids)
	return took, moves, err
}

// loop starts n jobs of argv with drift run -d on node from, placed by
// drift as it places any job, and returns the time until the last ended
// and the moves they made.
func (b *batch) loop(ctx context.Context, from, n int, argv []string) (time.Duration, int, error) {
	start := time.Now()
	var ids []string
	for range n {
		// No checkpoints, as the tasks of an array have none.
		out, err := b.execOn(ctx, from, append([]string{"drift", "run", "-d", "--checkpoint-every", "0", "--"}, argv...)...)
		if err != nil {
			return 0, 0, err
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	return b.finish(ctx, start, ids)
}

// simulateSweep runs the simulator's sweep: tasks with Pareto-distributed
// lengths queued on a pool of one-core nodes, a quarter of them at half
// speed, CPU shares wandering by ±20 % and moves costlier from busy
// sources, with the queue alone and with the balancer too, once per seed.
func simulateSweep(nodes, tasks, seeds int) SweepSim {
	out := SweepSim{Nodes: nodes, Tasks: tasks, Alpha: 2, Shortest: 5, Slow: 0.25, Noise: 0.2}
	var ns []sim.NodeSpec
	for i := range nodes {
		speed := 1.0
		if i%4 == 3 {
			speed = 0.5
		}
		ns = append(ns, sim.NodeSpec{Name: fmt.Sprintf("n%d", i), Cores: 1, Speed: speed})
	}
	for seed := range uint64(seeds) {
		cfg := sim.Config{Nodes: ns, Queue: sim.Pareto(tasks, out.Alpha, out.Shortest, 16<<20, seed), Seed: seed,
			Noise: out.Noise, BusySource: busyWeight, Observe: true, TaskStart: taskStart, Ahead: 1}
		out.Kept = append(out.Kept, sim.Run(cfg))
		cfg.GiveBack = true // as the arrays service does
		out.Plain = append(out.Plain, sim.Run(cfg))
		cfg.Balance = true
		out.Balanced = append(out.Balanced, sim.Run(cfg))
	}
	return out
}

// taskStart is how long a task takes to start in the simulator: in the
// lab (bench-sweep, 3 VMs held to 60% of a core) a node's next task
// started 2 to 5 s after the one before it ended, when nodes took no task
// ahead. Each node starts one task ahead, as the arrays service does.
const taskStart = 3 * time.Second

// busyWeight is what each job on a move's source adds to the move's
// time in the simulator (sim.Config.BusySource). Jobs run at nice 19, so
// a dump hardly waits for them, but they share memory, TCG and the link:
// in the lab (bench-balance on main, small jobs) a move from a node of 8
// jobs took 2.5 s, from one of 4 3.0 s, to the busy head 4 to 6 s; 5% per
// job is at the top of that.
const busyWeight = 0.05

// Print writes the figures.
func (r *SweepResult) Print(w io.Writer) {
	fmt.Fprintf(w, "sweep: %d equal CPU-bound tasks submitted from one worker of 3, each VM held to %.0f%% of a core, accel %s\n", r.Tasks, r.Share*100, r.Accel)
	fmt.Fprintf(w, "  one task alone           %8.1f s\n", r.Alone.Seconds())
	for i, busy := range r.Busy {
		when := fmt.Sprintf("before round %d", i+1)
		if i == len(r.Array) {
			when = fmt.Sprintf("after round %d", i)
		}
		fmt.Fprintf(w, "  one task on each at once %s s (head, worker 1, worker 2; %s)\n", secs(busy), when)
	}
	fmt.Fprintf(w, "  ideal (work/capacity)    %8.1f s  (%d tasks over the three nodes' summed rates, measured at once; each node's median of %d samples, whose ideals alone are %s s)\n",
		r.Ideal.Seconds(), r.Tasks, len(r.Busy), secs(idealsOf(r.Tasks, r.Busy)))
	row := func(name string, ds []time.Duration, moves []int) {
		fmt.Fprintf(w, "  %-24s %8.1f s  %.2fx ideal  spread %.1f s  runs %s s  migrations %v\n",
			name, Median(ds).Seconds(), ratio(Median(ds), r.Ideal), Spread(ds).Seconds(), secs(ds), moves)
	}
	row("drift run --array", r.Array, r.ArrayMoves)
	row("loop of drift run -d", r.Loop, r.LoopMoves) // placed by drift, no checkpoints (as tasks)
	if b := bracketed(r.Tasks, r.Busy, r.Array); len(b) > 0 {
		fmt.Fprintf(w, "  each array run against the capacity sampled before and after its round: %s\n", ratios(b))
	}
	fmt.Fprintf(w, "  goal: the array within 1.10x ideal (median of %d runs)\n", len(r.Array))
	p := r.Pool
	fmt.Fprintf(w, "simulator: %d tasks on %d one-core nodes (%.0f%% at half speed), lengths Pareto(shape %.1f, shortest %.0f s), shares ±%.0f%%, moves dearer from busy nodes, tasks %v to start (one ahead per node), %d seeds\n",
		p.Tasks, p.Nodes, p.Slow*100, p.Alpha, p.Shortest, p.Noise*100, taskStart, len(p.Plain))
	if len(p.Plain) > 0 {
		fmt.Fprintf(w, "  ideal (work/capacity, or the longest task alone) %s\n", simSecs(p.Plain, func(r sim.Result) time.Duration { return r.Ideal }))
	}
	for _, s := range []struct {
		name string
		rs   []sim.Result
	}{{"queue, nothing given back", p.Kept}, {"queue, no migration", p.Plain}, {"queue and balancer", p.Balanced}} {
		ms := make([]time.Duration, len(s.rs))
		ratios := make([]string, len(s.rs))
		moves, given := make([]int, len(s.rs)), make([]int, len(s.rs))
		for i, x := range s.rs {
			ms[i], ratios[i], moves[i], given[i] = x.Makespan, fmt.Sprintf("%.2f", x.Ratio()), x.Migrations, x.GivenBack
		}
		fmt.Fprintf(w, "  %-26s makespan median %.0f s, spread %.0f s; x ideal %s; migrations %v; given back %v\n",
			s.name, Median(ms).Seconds(), Spread(ms).Seconds(), strings.Join(ratios, " "), moves, given)
	}
}

func secs(ds []time.Duration) string {
	var s []string
	for _, d := range ds {
		s = append(s, fmt.Sprintf("%.1f", d.Seconds()))
	}
	return strings.Join(s, " ")
}

func simSecs(rs []sim.Result, f func(sim.Result) time.Duration) string {
	var s []string
	for _, r := range rs {
		s = append(s, fmt.Sprintf("%.0f s", f(r).Seconds()))
	}
	return strings.Join(slices.Compact(s), ", ")
}

// ratios prints ratios to ideal, and their median.
func ratios(rs []float64) string {
	var each []string
	for _, x := range rs {
		each = append(each, fmt.Sprintf("%.2fx", x))
	}
	sorted := slices.Sorted(slices.Values(rs))
	return fmt.Sprintf("%s (median %.2fx)", strings.Join(each, " "), sorted[len(sorted)/2])
}

// bracketed sets each run (run i of round i) against the ideal of the
// mean of the capacity samples before and after its round (busy[i] and
// busy[i+1]): the host's speed wanders by several percent over an
// invocation, and the samples next to a run say most about it. Nothing
// for a run without a sample after it.
func bracketed(tasks int, busy [][]time.Duration, runs []time.Duration) []float64 {
	var out []float64
	for i, d := range runs {
		if i+1 >= len(busy) {
			break
		}
		out = append(out, ratio(d, idealOf(tasks, medianEach([][]time.Duration{busy[i], busy[i+1]}))))
	}
	return out
}
