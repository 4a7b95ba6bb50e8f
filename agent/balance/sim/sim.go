// Package sim is a discrete-event simulator of a drift cluster that drives
// the balance package's policy: N nodes of given cores and speeds, a
// stream of CPU-bound jobs, processor sharing on each node, a balancer
// tick on every node each period, and moves that take the time the policy
// itself assumes. It reports makespan, mean slowdown and migrations beside
// the ideal (total work over total capacity). Tests use it for behaviour;
// the bench-balance benchmark prints its figures.
package sim

import (
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/driftcluster/drift/agent/balance"
)

// NodeSpec is a simulated machine.
type NodeSpec struct {
	Name  string
	Cores int     // 0 counts as 1
	Speed float64 // relative per-core speed; 0 counts as 1
	Mem   uint64  // bytes; 0: 4 GiB
}

// JobSpec is a simulated job: Work reference-core-seconds of CPU.
type JobSpec struct {
	ID     string
	Arrive time.Duration
	Work   float64
	RSS    uint64
	Home   string // where it is started
	Stay   bool
}

// Config is one simulation.
type Config struct {
	Nodes   []NodeSpec
	Jobs    []JobSpec
	Params  balance.Params
	Period  time.Duration // balancer tick; 0: 2s
	Balance bool          // run the balancer (false: jobs stay where they start)
	Place   bool          // place new jobs with balance.Place instead of on Home
	Seed    uint64        // order in which nodes decide each tick
}

// Result is what a simulation measured.
type Result struct {
	Makespan     time.Duration // first arrival to last completion
	Ideal        time.Duration // total work over total capacity
	MeanSlowdown float64       // mean of response time over run time alone on the fastest node
	Migrations   int
	MaxMoves     int // most moves of any one job
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
	node     int     // -1 while in flight
	arrived  float64 // when it landed on node (s)
	landsAt  float64 // in flight: when it lands
	target   int
	moves    int
	done     float64
	finished bool
	started  bool
}

type state struct {
	cfg     Config
	now     float64
	nodes   []balance.Node
	jobs    []*job
	running [][]*job // per node
	inbound []int    // per node: jobs in flight towards it
	res     Result
	rng     *rand.Rand
}

// Run simulates cfg to the last completion.
func Run(cfg Config) Result {
	if cfg.Period == 0 {
		cfg.Period = 2 * time.Second
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
		capacity += sp * float64(max(n.Cores, 1))
		fastest = math.Max(fastest, sp)
	}
	s.running = make([][]*job, len(cfg.Nodes))
	s.inbound = make([]int, len(cfg.Nodes))
	work, first := 0.0, math.Inf(1)
	for _, js := range cfg.Jobs {
		j := &job{spec: js, left: js.Work, node: idx[js.Home], target: -1}
		s.jobs = append(s.jobs, j)
		work += js.Work
		first = math.Min(first, js.Arrive.Seconds())
	}
	s.res.Ideal = dur(work / capacity)
	s.now = first
	period := cfg.Period.Seconds()
	nextTick := first + period
	for s.pending() {
		next := math.Min(nextTick, s.nextEvent())
		s.advance(next)
		s.arrivals()
		s.landings()
		if cfg.Balance && s.now >= nextTick {
			s.tick()
			nextTick += period
		} else if s.now >= nextTick {
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
	s.res.MeanSlowdown = slow / float64(len(s.jobs))
	return s.res
}

func dur(sec float64) time.Duration { return time.Duration(sec * float64(time.Second)) }

func (s *state) pending() bool {
	for _, j := range s.jobs {
		if !j.finished {
			return true
		}
	}
	return false
}

// rate is the speed of each job running on node i.
func (s *state) rate(i int) float64 {
	return balance.Rate(&s.nodes[i], float64(len(s.running[i])))
}

// nextEvent is the time of the next arrival, landing or completion.
func (s *state) nextEvent() float64 {
	t := math.Inf(1)
	for _, j := range s.jobs {
		switch {
		case j.finished:
		case !j.started:
			t = math.Min(t, j.spec.Arrive.Seconds())
		case j.node < 0:
			t = math.Min(t, j.landsAt)
		default:
			t = math.Min(t, s.now+j.left/s.rate(j.node))
		}
	}
	return t
}

// advance runs every node's jobs up to time t and retires those done.
func (s *state) advance(t float64) {
	dt := t - s.now
	for i := range s.running {
		r := s.rate(i)
		keep := s.running[i][:0]
		for _, j := range s.running[i] {
			j.left -= r * dt
			if j.left <= 1e-9 {
				j.finished, j.done = true, t
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
	for _, j := range s.jobs {
		if j.started || j.spec.Arrive.Seconds() > s.now {
			continue
		}
		j.started = true
		if s.cfg.Place {
			s.refresh()
			if name, _, err := balance.Place(s.nodes, j.spec.Home, j.spec.RSS, s.cfg.Params); err == nil {
				j.node = s.index(name)
			}
		}
		s.land(j, j.node)
	}
}

func (s *state) landings() {
	for _, j := range s.jobs {
		if !j.finished && j.started && j.node < 0 && j.landsAt <= s.now {
			s.inbound[j.target]--
			s.land(j, j.target)
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
		s.nodes[i].Runnable = float64(len(s.running[i]) + s.inbound[i])
	}
}

// tick lets every node, in random order, make at most one move.
func (s *state) tick() {
	s.refresh()
	best := 0.0
	for i := range s.nodes {
		best = math.Max(best, balance.Rate(&s.nodes[i], s.nodes[i].Runnable+1))
	}
	p := s.cfg.Params
	h := p.Hysteresis
	if h == 0 {
		h = 0.3
	}
	for _, i := range s.rng.Perm(len(s.nodes)) {
		n := &s.nodes[i]
		if len(s.running[i]) == 0 || balance.Rate(n, n.Runnable)*(1+h) > best && n.MemFree*10 >= n.MemTotal {
			continue // nothing here can gain: skip the policy's scan
		}
		m, ok := balance.Decide(s.nodes, s.view(i), n.Name, p)
		if !ok {
			continue
		}
		s.start(i, m)
		best = 0
		for k := range s.nodes {
			best = math.Max(best, balance.Rate(&s.nodes[k], s.nodes[k].Runnable+1))
		}
	}
}

// view is node i's jobs as its agent reports them.
func (s *state) view(i int) []balance.Job {
	var out []balance.Job
	for _, j := range s.running[i] {
		out = append(out, balance.Job{
			ID: j.spec.ID, Node: s.nodes[i].Name, CPU: 1, RSS: j.spec.RSS, // CPU-bound: always wants a core
			Age: dur(s.now - j.spec.Arrive.Seconds()), Resident: dur(s.now - j.arrived),
			Moves: j.moves, Stay: j.spec.Stay,
		})
	}
	return out
}

// start takes a job off node i for the time the move costs.
func (s *state) start(i int, m balance.Move) {
	t := s.index(m.To)
	for k, j := range s.running[i] {
		if j.spec.ID != m.Job {
			continue
		}
		s.running[i] = append(s.running[i][:k], s.running[i][k+1:]...)
		s.nodes[i].MemFree += j.spec.RSS
		s.nodes[i].Runnable--
		j.node, j.target, j.moves = -1, t, j.moves+1
		j.landsAt = s.now + s.cfg.Params.Cost(j.spec.RSS).Seconds()
		s.inbound[t]++
		s.nodes[t].Runnable++
		s.res.Migrations++
		return
	}
}
