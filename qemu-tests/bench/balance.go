package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/balance/sim"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// BalanceConfig says what bench-balance measures.
type BalanceConfig struct {
	ImageDir string        // drift-image output; required
	Jobs     int           // equal CPU-bound jobs started on one node; 0: 9
	Share    float64       // CPU share each VM is held to; 0: 0.6 (three VMs on two cores)
	JobTime  time.Duration // the run time of one job alone on a node, calibrated; 0: 30s
	Runs     int           // runs with balancing on; 0: 3
	Accel    lab.Accel
	Logger   *slog.Logger // nil: discard
}

// BalanceResult is what one bench-balance measured.
type BalanceResult struct {
	Accel      lab.Accel
	Jobs       int
	Share      float64
	Alone      time.Duration     // one job alone on a node
	Busy       [][]time.Duration // one job on each node at once, per node (node 1, the head, first); sampled before each run with balancing and after the last
	Ideal      time.Duration     // total work over total capacity, the capacity each node's median in Busy
	WithoutBal time.Duration     // makespan with balancing off
	Placed     time.Duration     // makespan of the jobs spread evenly over the nodes at their start, balancing off
	WithBal    []time.Duration   // makespan with balancing on, per run
	Migrations []int             // moves made with balancing on, per run
	MoveTimes  [][]time.Duration // per run, when each move ended, from the batch's start
	PlacedCPU  []nodeCPU         // per node, where its CPU went while the evenly placed jobs ran
	BalCPU     [][]nodeCPU       // per run with balancing, per node, where its CPU went
	Sim3       [2][]sim.Result   // this scenario simulated (per seed): without and with balancing
	Sim1000    [2]sim.Result     // the simulator at 1000 nodes: without and with balancing
}

// Balance boots a 3-node lab, holds each VM to the same CPU share, and
// runs the same batch of equal CPU-bound jobs from one node with
// balancing off once and on Runs times; then simulates the same scenario
// (with the moves' cost on a busy source and wandering CPU shares) and a
// larger one at 1000 nodes.
func Balance(ctx context.Context, cfg BalanceConfig) (*BalanceResult, error) {
	if cfg.Jobs == 0 {
		cfg.Jobs = 9
	}
	if cfg.Share == 0 {
		cfg.Share = 0.6
	}
	if cfg.JobTime == 0 {
		cfg.JobTime = 30 * time.Second
	}
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	res := &BalanceResult{Jobs: cfg.Jobs, Share: cfg.Share}
	b, log, down, err := equalLab(ctx, cfg.ImageDir, cfg.Accel, cfg.Share, cfg.Logger, &res.Accel)
	if err != nil {
		return nil, err
	}
	defer down()
	iters, alone, err := b.calibrate(ctx, cfg.JobTime)
	if err != nil {
		return nil, err
	}
	res.Alone = alone
	if res.WithoutBal, _, err = b.run(ctx, cfg.Jobs, iters, false); err != nil {
		return nil, err
	}
	// What no balancer can beat from a start on one node: the same jobs
	// placed evenly from the start, each node running its share at once.
	if res.Placed, res.PlacedCPU, err = b.placed(ctx, cfg.Jobs, iters); err != nil {
		return nil, err
	}
	for range cfg.Runs {
		// The host's speed wanders by several percent over an
		// invocation: capacity is sampled before each run, and the
		// ideal rests on the median of the samples, not on one.
		busy, err := b.capacity(ctx, iters)
		if err != nil {
			return nil, err
		}
		res.Busy = append(res.Busy, busy)
		before, balStart := b.moves, time.Now()
		took, cpu, err := b.run(ctx, cfg.Jobs, iters, true)
		if err != nil {
			return nil, err
		}
		res.WithBal = append(res.WithBal, took)
		res.MoveTimes = append(res.MoveTimes, b.exits.movesSince(balStart))
		res.Migrations = append(res.Migrations, b.moves-before)
		res.BalCPU = append(res.BalCPU, cpu)
		log.Info("bench-balance: with balancing", "took", took, "moves", b.moves-before)
	}
	// Once more after the last run: each run is then bracketed by
	// samples taken just before and just after it.
	busy, err := b.capacity(ctx, iters)
	if err != nil {
		return nil, err
	}
	res.Busy = append(res.Busy, busy)
	res.Ideal = idealOf(cfg.Jobs, medianEach(res.Busy))
	res.Sim3 = simulateLab(cfg.Jobs, medianEach(res.Busy), cfg.Runs)
	res.Sim1000 = simulate(1000)
	return res, nil
}

// equalLab boots a 3-node lab from the image in dir, holds each VM to
// the same share of a host core, so that they behave like separate
// machines of equal speed, and waits until it has formed. It returns a
// batch that starts jobs on worker 1, the logger (a discarding one for
// nil), and what takes it all down; *accel is set to the accelerator
// used.
func equalLab(ctx context.Context, dir string, want lab.Accel, share float64, logger *slog.Logger, accel *lab.Accel) (*batch, *slog.Logger, func(), error) {
	img, log, err := prepare(dir, logger)
	if err != nil {
		return nil, nil, nil, err
	}
	if *accel, err = resolveAccel(ctx, want, img, log); err != nil {
		return nil, nil, nil, err
	}
	work, err := os.MkdirTemp("", "dbench-")
	if err != nil {
		return nil, nil, nil, fmt.Errorf("bench: %w", err)
	}
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: work, Nodes: 3, Accel: *accel, Logger: log, DieWithParent: true})
	if err != nil {
		os.RemoveAll(work)
		return nil, nil, nil, fmt.Errorf("bench: %w", err)
	}
	var q *cpuQuota
	down := func() {
		if q != nil {
			q.release()
		}
		l.Down(context.WithoutCancel(ctx))
		keepConsoles(l, log)
		os.RemoveAll(work)
	}
	if q, err = limitCPU(fmt.Sprintf("drift-bench-%d", os.Getpid()), share, l.PID(1), l.PID(2), l.PID(3)); err != nil {
		down()
		return nil, nil, nil, fmt.Errorf("bench: %w", err)
	}
	names, err := formed(ctx, l, 3)
	if err != nil {
		down()
		return nil, nil, nil, err
	}
	return &batch{l: l, on: names[1], names: names, exits: watchExits(ctx, l)}, log, down, nil
}

// keepConsoles copies the lab's console logs into the directory named by
// $DRIFT_BENCH_CONSOLES, if set, before the lab's state is removed: the
// agents' logs of moves, queue claims and job ends say where a run's time
// went.
func keepConsoles(l *lab.Lab, log *slog.Logger) {
	dir := os.Getenv("DRIFT_BENCH_CONSOLES")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Warn("bench: keep consoles", "err", err)
		return
	}
	for n := 1; n <= l.Nodes(); n++ {
		b, err := os.ReadFile(l.ConsoleLog(n))
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("node%d.console.log", n)), b, 0o644)
		}
		if err != nil {
			log.Warn("bench: keep consoles", "node", n, "err", err)
		}
	}
}

// batch runs jobs from one node of a lab.
type batch struct {
	l     *lab.Lab
	on    string   // the node they start on
	names []string // every node's, node 1's first
	exits *exitWatch
	moves int
}

// capacity runs one job of iters work on each node at once, pinned there,
// balancing off, and returns each one's run time, in the order of
// b.names: the nodes' speeds when all of them are busy, as in a batch
// (the VMs then share the host's cores, and the head serves the shared
// storage besides).
func (b *batch) capacity(ctx context.Context, iters uint64) ([]time.Duration, error) {
	start, ids, err := b.startJobs(ctx, "off", b.names, iters, "--stay")
	if err != nil {
		return nil, err
	}
	if _, _, err := b.finish(ctx, start, ids); err != nil {
		return nil, err
	}
	return b.exits.took(start, ids), nil
}

// startJobs turns balancing on or off (mode), then starts one job of
// iters work on each of nodes, in order, with extra flags for drift run,
// and returns when it began and the jobs. No checkpoints: they are what
// bench-checkpoint measures, and they cost a batch this dense far more
// than their 5% (9P publishing on the head); here they would hide the
// balancer.
func (b *batch) startJobs(ctx context.Context, mode string, nodes []string, iters uint64, extra ...string) (time.Time, []string, error) {
	if _, err := b.exec(ctx, "drift", "balance", mode); err != nil {
		return time.Time{}, nil, err
	}
	start := time.Now()
	var ids []string
	for _, node := range nodes {
		argv := append(append([]string{"drift", "run", "-d"}, extra...), "--checkpoint-every", "0", "--node", node, "--", "drift-workload", "work", "-n", fmt.Sprint(iters))
		out, err := b.exec(ctx, argv...)
		if err != nil {
			return start, nil, err
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	return start, ids, nil
}

// idealOf is the makespan of jobs equal jobs spread perfectly over nodes
// that each run one such job in the given time: total work over total
// capacity.
func idealOf(jobs int, each []time.Duration) time.Duration {
	rate := 0.0 // jobs per second, all nodes together
	for _, d := range each {
		rate += 1 / d.Seconds()
	}
	return time.Duration(float64(jobs) / rate * float64(time.Second))
}

// medianEach is each node's median time over samples of capacity (each
// a time per node, in the same order).
func medianEach(samples [][]time.Duration) []time.Duration {
	if len(samples) == 0 {
		return nil
	}
	out := make([]time.Duration, len(samples[0]))
	for i := range out {
		var ds []time.Duration
		for _, s := range samples {
			ds = append(ds, s[i])
		}
		out[i] = Median(ds)
	}
	return out
}

// idealsOf is the ideal of each sample of capacity alone, to show how
// much it wanders.
func idealsOf(jobs int, samples [][]time.Duration) []time.Duration {
	var out []time.Duration
	for _, s := range samples {
		out = append(out, idealOf(jobs, s))
	}
	return out
}

// run starts n jobs of iters work on b.on, balancing on or off, and
// returns the time until the last one ends and where each node's CPU
// went meanwhile. It learns of ends from the nodes' consoles, which the
// host reads, so that watching costs the busy VMs nothing; drift ps is
// asked once, at the end, for the moves.
func (b *batch) run(ctx context.Context, n int, iters uint64, balancing bool) (time.Duration, []nodeCPU, error) {
	mode := "off"
	if balancing {
		mode = "on"
	}
	return b.timed(ctx, mode, slices.Repeat([]string{b.on}, n), iters)
}

// placed starts n jobs of iters work spread evenly over the nodes (job i
// on node i mod 3), balancing off, and returns the time until the last
// one ends and where each node's CPU went meanwhile.
func (b *batch) placed(ctx context.Context, n int, iters uint64) (time.Duration, []nodeCPU, error) {
	var nodes []string
	for i := range n {
		nodes = append(nodes, b.names[i%len(b.names)])
	}
	return b.timed(ctx, "off", nodes, iters)
}

// timed starts one job on each of nodes (startJobs), waits until they
// have all ended, counts their moves, and returns the time until the
// last one ended and where each node's CPU went meanwhile (nil if a node
// could not tell), read before the first start and after the last end.
func (b *batch) timed(ctx context.Context, mode string, nodes []string, iters uint64) (time.Duration, []nodeCPU, error) {
	before := b.cpu(ctx)
	start, ids, err := b.startJobs(ctx, mode, nodes, iters)
	if err != nil {
		return 0, nil, err
	}
	took, moves, err := b.finish(ctx, start, ids)
	b.moves += moves
	return took, cpuSince(before, b.cpu(ctx)), err
}

// finish waits until every job of ids has ended and returns the time
// from start until the last did, and the moves they made (drift ps is
// asked once, at the end).
func (b *batch) finish(ctx context.Context, start time.Time, ids []string) (time.Duration, int, error) {
	var last time.Time
	for {
		ended, at, failed := b.exits.ended(ids)
		if failed != "" {
			return 0, 0, fmt.Errorf("bench: %s", failed)
		}
		if ended == len(ids) {
			last = at
			break
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	out, err := b.exec(ctx, "drift", "ps", "--json")
	if err != nil {
		return 0, 0, err
	}
	var ps []api.JobInfo
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		return 0, 0, fmt.Errorf("bench: drift ps --json: %w", err)
	}
	moves := 0
	for _, j := range ps {
		if slices.Contains(ids, j.ID) {
			moves += j.Moves
		}
	}
	return last.Sub(start), moves, nil
}

// exitWatch follows every node's console for the agent's "job exited"
// lines and notes when each job ended; also the jobs that run the tasks
// of arrays.
type exitWatch struct {
	mu    sync.Mutex
	at    map[string]time.Time
	code  map[string]string
	moves []time.Time         // when each "job migrated" line came
	tasks map[string][]string // array → its tasks' jobs
}

var (
	exitedRE   = regexp.MustCompile(`msg="job exited" job=(\S+) code=(\d+)`)
	migratedRE = regexp.MustCompile(`msg="job migrated" job=`)
	taskRE     = regexp.MustCompile(`msg="arrays: task started" array=(\S+) task=\S+ attempt=\d+ job=(\S+)`)
)

func watchExits(ctx context.Context, l *lab.Lab) *exitWatch {
	w := &exitWatch{at: map[string]time.Time{}, code: map[string]string{}, tasks: map[string][]string{}}
	for n := 1; n <= l.Nodes(); n++ {
		go l.FollowConsole(ctx, n, w)
	}
	return w
}

// Write takes console lines (FollowConsole writes one at a time).
func (w *exitWatch) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		if migratedRE.MatchString(line) {
			w.mu.Lock()
			w.moves = append(w.moves, time.Now())
			w.mu.Unlock()
		}
		if m := taskRE.FindStringSubmatch(line); m != nil {
			w.mu.Lock()
			w.tasks[m[1]] = append(w.tasks[m[1]], m[2])
			w.mu.Unlock()
		}
		if m := exitedRE.FindStringSubmatch(line); m != nil {
			w.mu.Lock()
			if _, seen := w.at[m[1]]; !seen {
				w.at[m[1]], w.code[m[1]] = time.Now(), m[2]
			}
			w.mu.Unlock()
		}
	}
	return len(p), nil
}

// took is the time from start until each job of ids ended.
func (w *exitWatch) took(start time.Time, ids []string) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]time.Duration, len(ids))
	for i, id := range ids {
		out[i] = w.at[id].Sub(start)
	}
	return out
}

// tasksOf lists the jobs that have started tasks of array id.
func (w *exitWatch) tasksOf(id string) []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.tasks[id])
}

// movesSince lists the moves that ended after start, as offsets from it.
func (w *exitWatch) movesSince(start time.Time) []time.Duration {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []time.Duration
	for _, t := range w.moves {
		if t.After(start) {
			out = append(out, t.Sub(start).Round(100*time.Millisecond))
		}
	}
	return out
}

// ended counts the jobs of ids that have ended and says when the last of
// them did; failed names a job that ended with another status than 0.
func (w *exitWatch) ended(ids []string) (n int, last time.Time, failed string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range ids {
		at, ok := w.at[id]
		if !ok {
			continue
		}
		if c := w.code[id]; c != "0" {
			return n, last, fmt.Sprintf("job %s exited %s", id, c)
		}
		n++
		if at.After(last) {
			last = at
		}
	}
	return n, last, ""
}

func (b *batch) exec(ctx context.Context, argv ...string) (string, error) {
	return b.execOn(ctx, 1, argv...)
}

// execOn runs argv on node n and returns its output, or why it failed.
func (b *batch) execOn(ctx context.Context, n int, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := labport.Exec(ctx, b.l.LabSock(n), labport.Request{Argv: argv})
	if err != nil {
		return "", fmt.Errorf("bench: %q: %w", argv, err)
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("bench: %q exited %d: %s", argv, res.ExitCode, res.Stderr)
	}
	return string(res.Stdout), nil
}

// simulateLab simulates this benchmark's scenario once per seed, without
// and with balancing: jobs equal jobs started on worker 1 of 3 one-core
// nodes, with what the lab adds to the policy's model: each node as slow,
// when all are busy, as measured (each one's time for a job over the
// fastest one's, which the policy does not see in speeds: the head serves
// the shared storage besides), CPU shares that wander by ±20 % (three VMs
// share two host cores with whatever else runs there) and moves that take
// longer from a busy source; the policy measures each job's rate, as the
// agent does.
func simulateLab(jobs int, each []time.Duration, seeds int) [2][]sim.Result {
	fastest := slices.Min(each)
	var ns []sim.NodeSpec
	for i, d := range each {
		ns = append(ns, sim.NodeSpec{Name: fmt.Sprintf("n%d", i+1), Cores: 1, Overhead: 1 - fastest.Seconds()/d.Seconds()})
	}
	var js []sim.JobSpec
	for i := range jobs {
		js = append(js, sim.JobSpec{ID: fmt.Sprint(i), Work: fastest.Seconds(), RSS: 4 << 20, Home: "n2", Command: "work"})
	}
	var out [2][]sim.Result
	for seed := range uint64(seeds) {
		for i, bal := range []bool{false, true} {
			out[i] = append(out[i], sim.Run(sim.Config{Nodes: ns, Jobs: js, Balance: bal, Seed: seed,
				Noise: 0.2, BusySource: busyWeight, Observe: true}))
		}
	}
	return out
}

// simulate runs the balancer's simulator: 3 jobs per node, started on a
// tenth of the nodes, without and with balancing.
func simulate(nodes int) [2]sim.Result {
	var ns []sim.NodeSpec
	for i := range nodes {
		ns = append(ns, sim.NodeSpec{Name: fmt.Sprintf("n%d", i), Cores: 1, Speed: 1})
	}
	var js []sim.JobSpec
	for i := range 3 * nodes {
		js = append(js, sim.JobSpec{ID: fmt.Sprint(i), Work: 600, RSS: 64 << 20, Home: fmt.Sprintf("n%d", i%max(1, nodes/10))})
	}
	var out [2]sim.Result
	for i, bal := range []bool{false, true} {
		out[i] = sim.Run(sim.Config{Nodes: ns, Jobs: js, Balance: bal})
	}
	return out
}

// Print writes the figures.
func (r *BalanceResult) Print(w io.Writer) {
	fmt.Fprintf(w, "balance: %d equal CPU-bound jobs (no checkpoints) started on one node of 3, each VM held to %.0f%% of a core, accel %s\n", r.Jobs, r.Share*100, r.Accel)
	fmt.Fprintf(w, "  one job alone          %8.1f s\n", r.Alone.Seconds())
	for i, busy := range r.Busy {
		when := fmt.Sprintf("before run %d", i+1)
		if i == len(r.WithBal) {
			when = fmt.Sprintf("after run %d", i)
		}
		fmt.Fprintf(w, "  one job on each at once %s s (head, worker 1, worker 2; %s)\n", secs(busy), when)
	}
	fmt.Fprintf(w, "  ideal (work/capacity)  %8.1f s  (%d jobs over the three nodes' summed rates, measured at once; each node's median of %d samples, whose ideals alone are %s s)\n",
		r.Ideal.Seconds(), r.Jobs, len(r.Busy), secs(idealsOf(r.Jobs, r.Busy)))
	fmt.Fprintf(w, "  without balancing      %8.1f s  %.2fx ideal\n", r.WithoutBal.Seconds(), ratio(r.WithoutBal, r.Ideal))
	if r.Placed > 0 {
		next := ""
		if len(r.Busy) > 0 {
			next = fmt.Sprintf(", %.2fx the capacity sampled just after it", ratio(r.Placed, idealOf(r.Jobs, r.Busy[0])))
		}
		fmt.Fprintf(w, "  placed evenly at start %8.1f s  %.2fx ideal  (%d per node from the start, balancing off: what no balancer beats from one node%s)\n", r.Placed.Seconds(), ratio(r.Placed, r.Ideal), r.Jobs/3, next)
	}
	for i, d := range r.WithBal {
		fmt.Fprintf(w, "  with balancing, run %d  %8.1f s  %.2fx ideal  (%d migrations, ended at %v)\n", i+1, d.Seconds(), ratio(d, r.Ideal), r.Migrations[i], r.MoveTimes[i])
	}
	if len(r.PlacedCPU) > 0 || len(r.BalCPU) > 0 {
		fmt.Fprintf(w, "  where each node's CPU went (jobs / agent, CRIU and kernel / idle, in s; head, worker 1, worker 2):\n")
		if len(r.PlacedCPU) > 0 {
			fmt.Fprintf(w, "    placed evenly at start  %s\n", cpuRow(r.PlacedCPU))
		}
		for i, c := range r.BalCPU {
			if len(c) > 0 {
				fmt.Fprintf(w, "    with balancing, run %d   %s\n", i+1, cpuRow(c))
			}
		}
	}
	fmt.Fprintf(w, "  with balancing         median %.1f s, %.2fx ideal, spread %.1f s (goal: every run within 1.10x)\n",
		Median(r.WithBal).Seconds(), ratio(Median(r.WithBal), r.Ideal), Spread(r.WithBal).Seconds())
	if b := bracketed(r.Jobs, r.Busy, r.WithBal); len(b) > 0 {
		fmt.Fprintf(w, "  with balancing, each run against the capacity sampled just before and after it: %s\n", ratios(b))
	}
	if r.Placed > 0 {
		var p []float64
		for _, d := range r.WithBal {
			p = append(p, ratio(d, r.Placed))
		}
		fmt.Fprintf(w, "  with balancing, each run against placed evenly at start: %s\n", ratios(p))
	}
	fmt.Fprintf(w, "simulator, this scenario (nodes as slow as measured at once, shares ±20%%, moves dearer from busy nodes, jobs' rates measured), %d seeds:\n", len(r.Sim3[0]))
	for i, name := range []string{"without balancing", "with balancing"} {
		fmt.Fprintf(w, "     3 nodes %-18s", name+":")
		for _, x := range r.Sim3[i] {
			fmt.Fprintf(w, "  %.2fx (%d moves)", x.Ratio(), x.Migrations)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "simulator, the policy's model alone (3 jobs per node started on a tenth of the nodes):\n")
	fmt.Fprintf(w, "  1000 nodes without balancing: %v\n", r.Sim1000[0])
	fmt.Fprintf(w, "  1000 nodes with balancing:    %v\n", r.Sim1000[1])
}
