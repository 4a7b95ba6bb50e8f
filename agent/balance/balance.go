// Package balance is drift's load-balancing policy: given what membership
// gossips about every node and what a node knows about its own jobs, it
// says which job to move where, or nothing, and why. It also places new
// jobs. The policy (Decide, Place) is pure (no clocks, no I/O), so the
// Executor, the tests and the simulator in balance/sim drive the very
// same rules. The Executor runs it on a node (driftd wires it up): it
// reads the cluster, the node's jobs and the time through small
// interfaces, has a Migrator make the moves it picks, and leaves alone a
// while the targets that refuse (per kind of refusal) and the jobs whose
// moves fail.
//
// The model: a CPU-bound job on a node with c cores of relative speed s
// and r runnable tasks runs at rate s·min(1, c/r). A job moves when its
// rate on the target (counting itself there) beats its rate here by a
// margin (hysteresis), when the time that saves over its expected
// remaining life (taken to be its age so far, as a job that has run long
// tends to run long, unless it is known better: a sweep's task is expected
// to run as long as its array's ended tasks did, and a job to need as
// much CPU time as the jobs of its command from its home that ended
// while it ran) beats the time the move costs (its RSS over the
// link's bandwidth, plus a fixed cost), and when it has stayed where it is
// for a minimum time (after a move; a job that never moved goes as soon
// as its CPU use is known, so that a burst started on one node spreads
// at once). A node short of memory ushers a job to a node with
// room before it swaps. Jobs marked Stay never move.
package balance

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// Node is what the policy knows of one node.
type Node struct {
	Name     string
	Cores    int     // 0 counts as 1
	Speed    float64 // relative per-core speed (1 = reference); 0 counts as 1
	Runnable float64 // runnable tasks now, this node's jobs included
	MemTotal uint64  // bytes
	MemFree  uint64  // bytes
	Accepts  bool    // false: blocked, draining or not alive; takes no job
	Draining bool    // every job that may move should leave
}

// Job is what the policy knows of one job.
type Job struct {
	ID       string
	Node     string        // where it runs
	CPU      float64       // cores it wants: the time it ran or waited to run over the last sample (1 = one full core)
	RSS      uint64        // resident bytes
	Age      time.Duration // since it started
	Resident time.Duration // since it arrived on Node
	Moves    int
	Stay     bool // never moves
	// Remaining is how much longer the job is expected to run, when
	// something knows better than its age (a task of a sweep, whose
	// like have ended); 0: not known, taken to be its age.
	Remaining time.Duration
	// Work is how much more CPU time (at this node's speed) the job is
	// expected to need, when jobs of the same command started from the
	// same home have ended (their median less what it has used); 0: not
	// known. Its time left is Work over its share of a core here: a job
	// on a node crowded by dumps or other jobs has used less than its
	// age says, which age alone cannot tell.
	Work time.Duration
	// Rate is the rate it was measured to run at here over the last
	// sample (the CPU time it got over the wall time, times the node's
	// speed); 0: not measured. Other work on the node (a head serving
	// storage, a dump) makes it lower than counts and speeds predict;
	// the policy weighs it when it is less than half the model's rate,
	// and a job that only its measured rate sends away goes once, after
	// the minimum residence, to a node with a free core.
	Rate float64
}

// Params tune the policy. The zero value of each field means its default.
type Params struct {
	Hysteresis   float64       // a move must raise the job's rate by this factor over 1; 0: 0.3
	MinResidence time.Duration // no CPU move of a job that has moved before it has stayed this long; 0: 10s
	FirstMove    time.Duration // a job that has never moved may move once it has run this long (its CPU use is measured by then); 0: 1s
	MinHorizon   time.Duration // the least remaining life assumed for a job; 0: 30s
	FixedCost    time.Duration // cost of a move besides copying memory; 0: 2s
	Bandwidth    float64       // bytes per second between nodes; 0: 10 MB/s
	CostFactor   float64       // the time saved must exceed the cost times this; 0: 1
	MemReserve   float64       // a node keeps this fraction of its memory free; 0: 0.1
	MinCPU       float64       // jobs that want less than this many cores (I/O-bound jobs) are not moved for CPU; 0: 0.5
}

func (p Params) withDefaults() Params {
	def := func(v *float64, d float64) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&p.Hysteresis, 0.3)
	def(&p.Bandwidth, 10e6)
	def(&p.CostFactor, 1)
	def(&p.MemReserve, 0.1)
	def(&p.MinCPU, 0.5)
	defD(&p.MinResidence, 10*time.Second)
	defD(&p.FirstMove, time.Second)
	defD(&p.MinHorizon, 30*time.Second)
	defD(&p.FixedCost, 2*time.Second)
	return p
}

// Move is a decision to move a job.
type Move struct {
	Job, From, To string
	Reason        string
}

func (m Move) String() string {
	return fmt.Sprintf("move %s %s→%s: %s", m.Job, m.From, m.To, m.Reason)
}

// speed is n's relative per-core speed.
func speed(n *Node) float64 {
	if n.Speed == 0 {
		return 1
	}
	return n.Speed
}

// Rate is the speed at which one CPU-bound task runs on n when n has
// runnable tasks (that task included).
func Rate(n *Node, runnable float64) float64 {
	c, s := float64(max(n.Cores, 1)), speed(n)
	if runnable <= c {
		return s
	}
	return s * c / runnable
}

// starved is how far below the model's rate a job's measured rate must
// be for the policy to weigh it: less than that is the noise of sampling
// a VM's CPU.
const starved = 0.5

// overdueFactor: a job that has used this much more CPU time than the
// median of its like is not like them after all.
const overdueFactor = 1.5

// WorkLeft is how much more CPU time a job that has used used is
// expected to need, when jobs like it (the same command, from the same
// home) that ended used like: their median less used, at least a
// second; 0 (not known) when there are none, or once it has used half as
// much again as the median.
func WorkLeft(used time.Duration, like []time.Duration) time.Duration {
	if len(like) == 0 {
		return 0
	}
	like = slices.Clone(like)
	slices.Sort(like)
	median := like[len(like)/2]
	if median <= 0 || float64(used) > float64(median)*overdueFactor {
		return 0
	}
	return max(median-used, time.Second)
}

// Cost is how long moving a job of rss bytes takes.
func (p Params) Cost(rss uint64) time.Duration {
	p = p.withDefaults()
	return p.FixedCost + time.Duration(float64(rss)/p.Bandwidth*float64(time.Second))
}

// stay is how long a job that has moved moves times must have run where
// it is before it may move for load (p with its defaults).
func (p Params) stay(moves int) time.Duration {
	if moves == 0 {
		return p.FirstMove
	}
	return p.MinResidence
}

// reserve is the free memory a node keeps.
func (p Params) reserve(n *Node) uint64 { return uint64(float64(n.MemTotal) * p.MemReserve) }

// fits reports whether n can take rss bytes and keep its reserve.
func (p Params) fits(n *Node, rss uint64) bool {
	return n.MemFree >= rss && n.MemFree-rss >= p.reserve(n)
}

// Decide returns the move node `from` should make now, if any: its jobs
// are jobs (those of other nodes are not its business), nodes is the
// cluster as gossiped. It returns at most one move per call; the agent
// calls it each period, so the cluster settles step by step on fresh
// load figures instead of stampeding to the same idle node.
func Decide(nodes []Node, jobs []Job, from string, p Params) (Move, bool) {
	p = p.withDefaults()
	src := find(nodes, from)
	if src == nil {
		return Move{}, false
	}
	movable := make([]Job, 0, len(jobs))
	for _, j := range jobs {
		if j.Node == from && !j.Stay {
			movable = append(movable, j)
		}
	}
	if len(movable) == 0 {
		return Move{}, false
	}
	targets := candidates(nodes, from)
	if src.Draining {
		return drain(src, movable, targets, p)
	}
	if src.MemTotal > 0 && src.MemFree < p.reserve(src) {
		if m, ok := usher(src, movable, targets, p); ok {
			return m, true
		}
	}
	return cpuMove(src, movable, targets, p)
}

// mayMove reports whether Decide could move any job of from, whatever its
// jobs: from drains or is short of memory, another node has a free core,
// or one would run a job faster than from does now. When it says no, a
// node need not read its jobs' CPU use from /proc at all (on a busy
// cluster, every node, every period, for every job).
func mayMove(nodes []Node, from string, p Params) bool {
	p = p.withDefaults()
	src := find(nodes, from)
	if src == nil {
		return false
	}
	if src.Draining || src.MemTotal > 0 && src.MemFree < p.reserve(src) {
		return true
	}
	here := Rate(src, src.Runnable)
	for _, t := range candidates(nodes, from) {
		if t.Runnable+1 <= float64(max(t.Cores, 1)) || Rate(t, t.Runnable+1) >= here*(1+p.Hysteresis) {
			return true
		}
	}
	return false
}

// candidates are the nodes that accept jobs, other than from, best first
// for one more CPU-bound task.
func candidates(nodes []Node, from string) []*Node {
	var out []*Node
	for i := range nodes {
		if n := &nodes[i]; n.Accepts && n.Name != from {
			out = append(out, n)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		ri, rj := Rate(out[i], out[i].Runnable+1), Rate(out[j], out[j].Runnable+1)
		if ri != rj {
			return ri > rj
		}
		return out[i].MemFree > out[j].MemFree
	})
	return out
}

// bestFit is the first target (best rate first) that can hold rss.
func bestFit(targets []*Node, rss uint64, p Params) *Node {
	for _, t := range targets {
		if p.fits(t, rss) {
			return t
		}
	}
	return nil
}

func drain(src *Node, jobs []Job, targets []*Node, p Params) (Move, bool) {
	for _, j := range jobs {
		if t := bestFit(targets, j.RSS, p); t != nil {
			return Move{Job: j.ID, From: src.Name, To: t.Name,
				Reason: fmt.Sprintf("%s is draining; %s has the best rate for it (%.2f)", src.Name, t.Name, Rate(t, t.Runnable+1))}, true
		}
	}
	return Move{}, false
}

// usher sends away the largest job that some node can hold, to the node
// with the best rate among those.
func usher(src *Node, jobs []Job, targets []*Node, p Params) (Move, bool) {
	sorted := append([]Job(nil), jobs...)
	sort.SliceStable(sorted, func(i, k int) bool { return sorted[i].RSS > sorted[k].RSS })
	for _, j := range sorted {
		if t := bestFit(targets, j.RSS, p); t != nil {
			return Move{Job: j.ID, From: src.Name, To: t.Name,
				Reason: fmt.Sprintf("memory: %s has %s free of %s; %s has room (%s free) for its %s",
					src.Name, mib(src.MemFree), mib(src.MemTotal), t.Name, mib(t.MemFree), mib(j.RSS))}, true
		}
	}
	return Move{}, false
}

// cpuMove picks the job and target that save the most time, if any saves
// more than its move costs; of jobs that save as much (young jobs all
// count the same remaining life), the youngest, which takes the least
// of this node's work along: the work a busy node has done stays here,
// instead of leaving it last to finish.
func cpuMove(src *Node, jobs []Job, targets []*Node, p Params) (Move, bool) {
	model := Rate(src, src.Runnable)
	var (
		best     Move
		bestGain time.Duration
		bestAge  time.Duration
	)
	for _, j := range jobs {
		cur, measured := model, ""
		if j.Rate > 0 && j.Rate < model*starved {
			cur, measured = j.Rate, " measured"
		}
		if j.Resident < p.stay(j.Moves) || j.CPU < p.MinCPU {
			continue
		}
		t := bestFit(targets, j.RSS, p)
		if t == nil {
			continue
		}
		next := Rate(t, t.Runnable+1)
		if next < cur*(1+p.Hysteresis) {
			continue
		}
		if next < model*(1+p.Hysteresis) && (t.Runnable+1 > float64(max(t.Cores, 1)) || j.Moves > 0 || j.Resident < p.MinResidence) {
			// Only its measured rate says it should go. A measurement is
			// noisy (a job's start, a dump here, a VM's share), so it
			// must have held for the minimum residence, and a job that
			// moved once does not move again on it alone (in the lab,
			// tasks measured low right after they started were sent
			// back and forth). The target must have a free core: else it
			// would share it, slowing its own jobs by as much as this
			// one gains, while the core it leaves here goes to waste.
			continue
		}
		horizon, known := max(j.Age, p.MinHorizon), ""
		switch {
		case j.Remaining > 0:
			horizon = j.Remaining
		case j.Work > 0:
			horizon = time.Duration(float64(j.Work) * speed(src) / cur)
			known = fmt.Sprintf(" (%s of CPU left, as its like say)", j.Work.Round(time.Second/10))
		}
		saved := time.Duration(float64(horizon) * (1 - cur/next))
		cost := p.Cost(j.RSS)
		if float64(saved) <= float64(cost)*p.CostFactor || saved < bestGain || saved == bestGain && j.Age >= bestAge {
			continue
		}
		bestGain, bestAge = saved, j.Age
		best = Move{Job: j.ID, From: src.Name, To: t.Name,
			Reason: fmt.Sprintf("load: rate %.2f%s on %s (%.1f runnable on %d cores) vs %.2f on %s; saves ~%s%s for a %s move",
				cur, measured, src.Name, src.Runnable, max(src.Cores, 1), next, t.Name, saved.Round(time.Second), known, cost.Round(time.Second))}
	}
	return best, bestGain > 0
}

// Place chooses the node for a new job of rss bytes started from home:
// the accepting node where it would run fastest, home when that is as
// good (within the hysteresis margin), so that short jobs do not travel
// for nothing.
func Place(nodes []Node, home string, rss uint64, p Params) (node, reason string, err error) {
	p = p.withDefaults()
	h := find(nodes, home)
	targets := candidates(nodes, home)
	t := bestFit(targets, rss, p)
	homeOK := h != nil && h.Accepts && p.fits(h, rss)
	switch {
	case homeOK && (t == nil || Rate(t, t.Runnable+1) < Rate(h, h.Runnable+1)*(1+p.Hysteresis)):
		return home, fmt.Sprintf("home %s runs it at rate %.2f", home, Rate(h, h.Runnable+1)), nil
	case t != nil:
		return t.Name, fmt.Sprintf("%s runs it at rate %.2f", t.Name, Rate(t, t.Runnable+1)), nil
	}
	return "", "", fmt.Errorf("place a job of %s: no node accepts jobs and has that much memory free (see drift nodes; drift unblock NODE)", mib(rss))
}

func find(nodes []Node, name string) *Node {
	for i := range nodes {
		if nodes[i].Name == name {
			return &nodes[i]
		}
	}
	return nil
}

func mib(b uint64) string { return fmt.Sprintf("%d MiB", b>>20) }
