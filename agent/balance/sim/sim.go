// Package sim is a discrete-event simulator of a drift cluster that drives
// the balance package's policy: N nodes of given cores and speeds, a
// stream of CPU-bound jobs, processor sharing on each node, a balancer
// tick on every node each period, and moves that take the time the policy
// itself assumes. It also models what makes a real pool differ from the
// policy's view of it: CPU shares that wander (Noise), CPU taken by other
// work than jobs (NodeSpec.Overhead, a head serving storage), and moves
// that take longer from a busy source, whose dump shares the CPU with the
// jobs there (BusySource). Jobs either start at once where they are sent
// (Jobs) or wait in the cluster's queue until a node has a free core
// (Queue), as the tasks of drift run --array do. It reports makespan,
// mean slowdown and migrations beside the ideal (total work over total
// capacity, or the longest job alone when that is longer). Tests use it
// for behaviour; bench-balance and bench-sweep print its figures.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/driftcluster/drift/agent/balance"
)

// NodeSpec is a simulated machine.
type NodeSpec struct {
	Name  string
	Cores int     // 0 counts as 1
	Speed float64 // relative per-core speed, as the node measures and gossips it; 0 counts as 1
	Mem   uint64  // bytes; 0: 4 GiB
	// Overhead is the share of the node's CPU that other work than jobs
	// takes (a head serving the shared storage); the policy does not see
	// it in Speed. 0: none.
	Overhead float64
}

// JobSpec is a simulated job: Work reference-core-seconds of CPU.
type JobSpec struct {
	ID     string
	Arrive time.Duration
	Work   float64
	RSS    uint64
	Home   string // where it is started (not used for Queue)
	Stay   bool
	// Command makes jobs alike: once jobs of the same command and home
	// have ended, the agent knows the work the others have left from
	// theirs (balance.WorkLeft), as an agent's home does. "": alike
	// with none.
	Command string
}

// Config is one simulation.
type Config struct {
	Nodes []NodeSpec
	Jobs  []JobSpec // started on their Home (or placed, with Place) when they arrive
	// Queue are tasks that wait, in order, in the cluster's queue once
	// they arrive, until a node has a free core (its jobs and those on
	// their way to it fewer than its cores): drift run --array.
	Queue []JobSpec
	// TaskStart is how long a task taken from the queue takes to start
	// (its claim on the shared storage, its job, its wrapper): it counts
	// on its node meanwhile, but runs only after. 0: at once.
	TaskStart time.Duration
	// Ahead is how many tasks beyond its cores a node takes while the
	// queue holds tasks, as the arrays service's Ahead (its default is
	// 1); 0: none. Such a task starts (TaskStart), then waits, running
	// nothing, until a core of its node frees.
	Ahead int
	// GiveBack gives a task started ahead back, as the arrays service
	// does, when the queue is empty and another node at least 3/4 as fast has
	// had a free core for a second, unless a core of its node frees within
	// 3 s by the median run time of the tasks that have ended (a task past
	// 1.5 times the median may run on for long): the idle node starts it
	// (TaskStart), and the giver takes no task ahead for 5 s. Looked at
	// every Period.
	GiveBack bool
	Params   balance.Params
	Period   time.Duration // balancer tick; 0: 2s
	Balance  bool          // run the balancer (false: jobs stay where they start)
	Place    bool          // place new jobs with balance.Place instead of on Home
	Seed     uint64        // order in which nodes decide each tick; the noise
	// Noise makes each node's CPU share wander: every NoisePeriod its
	// speed is multiplied by a factor drawn uniformly from
	// [1-Noise, 1+Noise], which the policy does not see in Speed. 0: none.
	Noise       float64
	NoisePeriod time.Duration // 0: 5s
	// BusySource is what each job running on a move's source adds to
	// the move's time: a move takes Params.Cost times 1 + BusySource ×
	// (jobs there over cores), as the dump and the copy share the
	// source's CPU, memory and link with them. 0: moves cost the same
	// from any source. The moving job makes no progress until it lands.
	BusySource float64
	// Observe tells the policy each job's measured rate (balance.Job.Rate),
	// as the Executor does from the CPU time each job gets; false: the
	// policy sees counts and speeds only.
	Observe bool
}

// Result is what a simulation measured.
type Result struct {
	Makespan     time.Duration // first arrival to last completion
	Ideal        time.Duration // total work over total capacity, or the longest job alone on the fastest node if longer
	MeanSlowdown float64       // mean of response time over run time alone on the fastest node
	Migrations   int
	MaxMoves     int // most moves of any one job
	GivenBack    int // tasks given back to the queue (GiveBack)
}

func (r Result) String() string {
	return fmt.Sprintf("makespan %s (ideal %s, %.2fx) mean slowdown %.2f migrations %d (max %d per job)",
		r.Makespan.Round(100*time.Millisecond), r.Ideal.Round(100*time.Millisecond), r.Ratio(), r.MeanSlowdown, r.Migrations, r.MaxMoves)
}

// Ratio is makespan over ideal.
func (r Result) Ratio() float64 { return float64(r.Makespan) / float64(r.Ideal) }

type job struct {
	spec     JobSpec
	left     float64 // work left
	node     int     // -1 while in flight or queued
	arrived  float64 // when it landed on node (s)
	landsAt  float64 // in flight: when it lands
	target   int
	moves    int
	done     float64
	finished bool
	starting bool // a task on its way from the queue to its node
	ahead    bool // a starting task taken while every core of its node was taken: it waits, counted in no load, as the arrays service marks it
}

type state struct {
	cfg      Config
	now      float64
	nodes    []balance.Node // as the policy sees them
	eff      []float64      // each node's true per-core speed now
	jobs     []*job
	waiting  []*job    // not arrived yet, by arrival
	queue    []*job    // arrived tasks waiting for a core, in order
	inflight []*job    // moving
	running  [][]*job  // per node
	held     [][]*job  // per node: tasks started ahead, waiting for a core
	inbound  []int     // per node: jobs in flight towards it
	ahead    []int     // per node: of those, tasks taken ahead (they will wait)
	noAhead  []float64 // per node: takes no task ahead before then (GiveBack)
	idleAt   []float64 // per node: since when it has had a free core (-1: it has none)
	took     []float64 // run times of the first tasks that ended unmoved, for the median
	gaveBack int
	left     int // jobs not finished
	res      Result
	rng      *rand.Rand
}

// Run simulates cfg to the last completion.
func Run(cfg Config) Result {
	if cfg.Period == 0 {
		cfg.Period = 2 * time.Second
	}
	if cfg.NoisePeriod == 0 {
		cfg.NoisePeriod = 5 * time.Second
	}
	s := &state{cfg: cfg, rng: rand.New(rand.NewPCG(cfg.Seed, 1))}
	idx := map[string]int{}
	capacity, fastest := 0.0, 0.0
	for i, n := range cfg.Nodes {
		sp := n.Speed
		if sp == 0 {
			sp = 1
		}
		mem := n.Mem
		if mem == 0 {
			mem = 4 << 30
		}
		idx[n.Name] = i
		s.nodes = append(s.nodes, balance.Node{Name: n.Name, Cores: max(n.Cores, 1), Speed: sp, MemTotal: mem, MemFree: mem, Accepts: true})
		capacity += sp * (1 - n.Overhead) * float64(max(n.Cores, 1))
		fastest = math.Max(fastest, sp*(1-n.Overhead))
	}
	s.eff = make([]float64, len(cfg.Nodes))
	s.redraw()
	s.running = make([][]*job, len(cfg.Nodes))
	s.held = make([][]*job, len(cfg.Nodes))
	s.inbound = make([]int, len(cfg.Nodes))
	s.ahead = make([]int, len(cfg.Nodes))
	s.noAhead = make([]float64, len(cfg.Nodes))
	s.idleAt = make([]float64, len(cfg.Nodes))
	for i := range s.idleAt {
		s.idleAt[i] = -1
	}
	work, longest, first := 0.0, 0.0, math.Inf(1)
	add := func(js JobSpec, home int) {
		j := &job{spec: js, left: js.Work, node: home, target: -1}
		s.jobs = append(s.jobs, j)
		s.waiting = append(s.waiting, j)
		work += js.Work
		longest = math.Max(longest, js.Work)
		first = math.Min(first, js.Arrive.Seconds())
	}
	for _, js := range cfg.Jobs {
		add(js, idx[js.Home])
	}
	for _, js := range cfg.Queue {
		add(js, -1)
	}
	slices.SortStableFunc(s.waiting, func(a, b *job) int { return int(a.spec.Arrive - b.spec.Arrive) })
	s.left = len(s.jobs)
	s.res.Ideal = dur(math.Max(work/capacity, longest/fastest))
	s.now = first
	period, noisePeriod := cfg.Period.Seconds(), cfg.NoisePeriod.Seconds()
	nextTick, nextNoise := first+period, first+noisePeriod
	for s.left > 0 {
		next := math.Min(nextTick, s.nextEvent())
		if cfg.Noise > 0 {
			next = math.Min(next, nextNoise)
		}
		s.advance(next)
		s.promote()
		s.arrivals()
		s.landings()
		s.pull()
		if s.now >= nextNoise {
			s.redraw()
			nextNoise += noisePeriod
		}
		if s.now >= nextTick {
			if cfg.GiveBack {
				s.giveBack()
			}
			if cfg.Balance {
				s.tick()
				s.pull()
			}
			nextTick += period
		}
	}
	slow := 0.0
	last := first
	for _, j := range s.jobs {
		last = math.Max(last, j.done)
		slow += (j.done - j.spec.Arrive.Seconds()) / (j.spec.Work / fastest)
		s.res.MaxMoves = max(s.res.MaxMoves, j.moves)
	}
	s.res.Makespan = dur(last - first)
	s.res.GivenBack = s.gaveBack
	s.res.MeanSlowdown = slow / float64(len(s.jobs))
	return s.res
}

func dur(sec float64) time.Duration { return time.Duration(sec * float64(time.Second)) }

// redraw sets every node's true speed: its nominal speed less its
// overhead, times this period's noise.
func (s *state) redraw() {
	for i, n := range s.cfg.Nodes {
		f := 1.0
		if s.cfg.Noise > 0 {
			f = 1 + s.cfg.Noise*(2*s.rng.Float64()-1)
		}
		s.eff[i] = s.nodes[i].Speed * (1 - n.Overhead) * f
	}
}

// rate is the true speed of each job running on node i.
func (s *state) rate(i int) float64 {
	c, r := float64(s.nodes[i].Cores), float64(len(s.running[i]))
	if r <= c {
		return s.eff[i]
	}
	return s.eff[i] * c / r
}

// nextEvent is the time of the next arrival, landing or completion.
func (s *state) nextEvent() float64 {
	t := math.Inf(1)
	if len(s.waiting) > 0 {
		t = s.waiting[0].spec.Arrive.Seconds()
	}
	for _, j := range s.inflight {
		t = math.Min(t, j.landsAt)
	}
	for i, js := range s.running {
		if len(js) == 0 {
			continue
		}
		least := math.Inf(1)
		for _, j := range js {
			least = math.Min(least, j.left)
		}
		t = math.Min(t, s.now+least/s.rate(i))
	}
	return t
}

// advance runs every node's jobs up to time t and retires those done.
func (s *state) advance(t float64) {
	dt := t - s.now
	for i := range s.running {
		if len(s.running[i]) == 0 {
			continue
		}
		r := s.rate(i)
		keep := s.running[i][:0]
		for _, j := range s.running[i] {
			j.left -= r * dt
			if j.left <= 1e-9 {
				j.finished, j.done = true, t
				if j.moves == 0 && j.spec.Home == "" && len(s.took) < 201 {
					s.took = append(s.took, t-j.arrived)
				}
				s.left--
				s.nodes[i].MemFree += j.spec.RSS
				continue
			}
			keep = append(keep, j)
		}
		s.running[i] = keep
	}
	s.now = t
}

func (s *state) arrivals() {
	for len(s.waiting) > 0 && s.waiting[0].spec.Arrive.Seconds() <= s.now {
		j := s.waiting[0]
		s.waiting = s.waiting[1:]
		if j.node < 0 { // a task: to the queue
			s.queue = append(s.queue, j)
			continue
		}
		if s.cfg.Place {
			s.refresh()
			if name, _, err := balance.Place(s.nodes, j.spec.Home, j.spec.RSS, s.cfg.Params); err == nil {
				j.node = s.index(name)
			}
		}
		s.land(j, j.node)
	}
}

// pull gives queued tasks to the nodes with a free core, from a random
// node on, as each node's arrays service takes what it has room for.
func (s *state) pull() {
	if len(s.queue) == 0 {
		return
	}
	n := len(s.nodes)
	for k, off := 0, s.rng.IntN(n); k < n; k++ {
		i := (off + k) % n
		for len(s.queue) > 0 && s.nodes[i].Accepts {
			room := len(s.running[i]) + len(s.held[i]) + s.inbound[i]
			ahead := s.cfg.Ahead
			if s.now < s.noAhead[i] {
				ahead = 0
			}
			if room >= s.nodes[i].Cores+ahead {
				break
			}
			j := s.queue[0]
			s.queue = s.queue[1:]
			j.target, j.landsAt, j.starting = i, s.now+s.cfg.TaskStart.Seconds(), true
			if j.ahead = room >= s.nodes[i].Cores; j.ahead {
				s.ahead[i]++
			}
			s.inflight = append(s.inflight, j)
			s.inbound[i]++
		}
		if len(s.queue) == 0 {
			return
		}
	}
}

func (s *state) landings() {
	keep := s.inflight[:0]
	for _, j := range s.inflight {
		if j.landsAt > s.now {
			keep = append(keep, j)
			continue
		}
		s.inbound[j.target]--
		if j.ahead {
			s.ahead[j.target]--
		}
		j.ahead = false
		if j.starting && len(s.running[j.target]) >= s.nodes[j.target].Cores {
			j.starting = false
			s.held[j.target] = append(s.held[j.target], j)
			continue
		}
		j.starting = false
		s.land(j, j.target)
	}
	s.inflight = keep
}

// giveBack is GiveBack, at one look.
func (s *state) giveBack() {
	var ready []int
	for i := range s.nodes {
		if s.nodes[i].Accepts && len(s.running[i])+len(s.held[i])+s.inbound[i] < s.nodes[i].Cores {
			if s.idleAt[i] < 0 {
				s.idleAt[i] = s.now
			}
			if s.now-s.idleAt[i] >= 1 {
				ready = append(ready, i)
			}
		} else {
			s.idleAt[i] = -1
		}
	}
	if len(ready) == 0 || len(s.queue) > 0 {
		return
	}
	median := -1.0
	if len(s.took) > 0 {
		t := slices.Clone(s.took)
		slices.Sort(t)
		median = t[len(t)/2]
	}
	for i := range s.held {
		if len(ready) == 0 {
			return
		}
		if len(s.held[i]) == 0 {
			continue
		}
		soonest := -1.0
		for _, j := range s.running[i] {
			elapsed := s.now - j.arrived
			if median < 0 || elapsed > 1.5*median {
				soonest = -1
				break
			}
			if r := math.Max(median-elapsed, 1); soonest < 0 || r < soonest {
				soonest = r
			}
		}
		if soonest >= 0 && soonest < 3 {
			continue
		}
		k := slices.IndexFunc(ready, func(r int) bool { return s.nodes[r].Speed >= 0.75*s.nodes[i].Speed })
		if k < 0 {
			continue // only slower nodes are idle: it would run slower there
		}
		j := s.held[i][len(s.held[i])-1]
		s.held[i] = s.held[i][:len(s.held[i])-1]
		r := ready[k]
		j.node, j.target, j.landsAt, j.starting = -1, r, s.now+s.cfg.TaskStart.Seconds(), true
		s.inflight = append(s.inflight, j)
		s.inbound[r]++
		s.noAhead[i] = s.now + 5
		s.gaveBack++
		ready = slices.Delete(ready, k, k+1)
	}
}

// promote lets held tasks run where a core has freed.
func (s *state) promote() {
	for i := range s.held {
		for len(s.held[i]) > 0 && len(s.running[i]) < s.nodes[i].Cores {
			j := s.held[i][0]
			s.held[i] = s.held[i][1:]
			s.land(j, i)
		}
	}
}

func (s *state) land(j *job, i int) {
	j.node, j.target, j.arrived = i, -1, s.now
	s.running[i] = append(s.running[i], j)
	s.nodes[i].MemFree -= min(j.spec.RSS, s.nodes[i].MemFree)
}

func (s *state) index(name string) int {
	for i, n := range s.nodes {
		if n.Name == name {
			return i
		}
	}
	return -1
}

// refresh sets every node's runnable count as the policy sees it: the jobs
// running there plus those on their way (a reservation, so that nodes do
// not all send work to the same idle machine in one tick).
func (s *state) refresh() {
	for i := range s.nodes {
		s.nodes[i].Runnable = float64(len(s.running[i]) + s.inbound[i] - s.ahead[i])
	}
}

// tick lets every node, in random order, make at most one move.
func (s *state) tick() {
	s.refresh()
	best := s.best()
	p := s.cfg.Params
	h := p.Hysteresis
	if h == 0 {
		h = 0.3
	}
	for _, i := range s.rng.Perm(len(s.nodes)) {
		n := &s.nodes[i]
		if len(s.running[i]) == 0 {
			continue
		}
		cur := balance.Rate(n, n.Runnable)
		if s.cfg.Observe {
			cur = math.Min(cur, s.rate(i))
		}
		if cur*(1+h) > best && n.MemFree*10 >= n.MemTotal {
			continue // nothing here can gain: skip the policy's scan
		}
		m, ok := balance.Decide(s.nodes, s.view(i), n.Name, p)
		if !ok {
			continue
		}
		s.start(i, m)
		best = s.best()
	}
}

// best is the best rate a new job would get on any node, as the policy
// sees them.
func (s *state) best() float64 {
	best := 0.0
	for k := range s.nodes {
		if s.nodes[k].Accepts {
			best = math.Max(best, balance.Rate(&s.nodes[k], s.nodes[k].Runnable+1))
		}
	}
	return best
}

// view is node i's jobs as its agent reports them.
func (s *state) view(i int) []balance.Job {
	var out []balance.Job
	for _, j := range s.running[i] {
		bj := balance.Job{
			ID: j.spec.ID, Node: s.nodes[i].Name, CPU: 1, RSS: j.spec.RSS, // CPU-bound: always wants a core
			Age: dur(s.now - j.arrived), Resident: dur(s.now - j.arrived),
			Moves: j.moves, Stay: j.spec.Stay, Work: s.workLeft(j, i),
		}
		if s.cfg.Observe {
			bj.Rate = s.rate(i)
		}
		out = append(out, bj)
	}
	return out
}

// workLeft is the CPU time on node i that job j is expected to need
// still, as its home tells it from the jobs like it that ended since it
// arrived (work counts in reference-core-seconds, CPU time on i at its
// speed); 0: not known.
func (s *state) workLeft(j *job, i int) time.Duration {
	if j.spec.Command == "" {
		return 0
	}
	var like []time.Duration
	for _, o := range s.jobs {
		if o.finished && o.spec.Command == j.spec.Command && o.spec.Home == j.spec.Home && o.done > j.spec.Arrive.Seconds() {
			like = append(like, dur(o.spec.Work))
		}
	}
	speed := s.nodes[i].Speed
	if speed == 0 {
		speed = 1
	}
	return time.Duration(float64(balance.WorkLeft(dur(j.spec.Work-j.left), like)) / speed)
}

// start takes a job off node i for the time the move costs.
func (s *state) start(i int, m balance.Move) {
	t := s.index(m.To)
	for k, j := range s.running[i] {
		if j.spec.ID != m.Job {
			continue
		}
		cost := s.cfg.Params.Cost(j.spec.RSS).Seconds()
		cost *= 1 + s.cfg.BusySource*float64(len(s.running[i]))/float64(s.nodes[i].Cores)
		s.running[i] = append(s.running[i][:k], s.running[i][k+1:]...)
		s.nodes[i].MemFree += j.spec.RSS
		s.nodes[i].Runnable--
		j.node, j.target, j.moves = -1, t, j.moves+1
		j.landsAt = s.now + cost
		s.inflight = append(s.inflight, j)
		s.inbound[t]++
		s.nodes[t].Runnable++
		s.res.Migrations++
		return
	}
}

// Pareto is n tasks whose lengths (reference-core-seconds) follow a
// Pareto distribution of shape alpha and scale xm (the shortest), mean
// alpha·xm/(alpha-1) for alpha > 1, all submitted at once, each of rss
// bytes; seed fixes the draw.
func Pareto(n int, alpha, xm float64, rss uint64, seed uint64) []JobSpec {
	rng := rand.New(rand.NewPCG(seed, 2))
	js := make([]JobSpec, n)
	for i := range js {
		js[i] = JobSpec{ID: fmt.Sprint(i), Work: xm / math.Pow(1-rng.Float64(), 1/alpha), RSS: rss}
	}
	return js
}
