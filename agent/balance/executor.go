package balance

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Cluster is the cluster as membership gossips it.
type Cluster interface {
	// Nodes returns every member, this node included, each with the
	// speed it measured (the Executor coarsens speeds, see coarsen).
	Nodes() []Node
}

// Resident is a job running on this node, as the Executor sees it.
type Resident struct {
	ID    string
	CPU   float64 // cores it wanted over the last sample: it ran or waited to run
	Ran   float64 // cores it ran on over the last sample; 0: not measured
	RSS   uint64
	Since time.Time // when it arrived on this node
	Moves int
	Stay  bool
	// Remaining is how much longer it is expected to run; 0: not known.
	Remaining time.Duration
	// Work is how much more CPU time it is expected to need; 0: not known.
	Work time.Duration
	// Waiting: it waits for a core (a sweep's task started ahead) and
	// runs nothing: it does not count in the node's load.
	Waiting bool
}

// Residents lists the jobs running on this node that are not moving now.
type Residents interface {
	Residents() []Resident
}

// Migrator moves one of this node's jobs to another node.
type Migrator interface {
	// Migrate moves mv.Job to mv.To. expect is how many jobs the
	// Executor counts on the target: the target refuses the job if it
	// runs or receives more by now. On any failure the job runs here
	// still; a *RefusedError says the target turned it down, and how.
	Migrate(ctx context.Context, mv Move, expect int) (Moved, error)
}

// Moved is what a move's target reported and what the move cost.
type Moved struct {
	TargetLoad    int // the target's jobs when it admitted this one, this one included
	Freeze, Total time.Duration
}

// Refusal is the kind of a target's refusal. It decides how long the
// Executor leaves that target alone; the job is free to go elsewhere.
type Refusal int

const (
	// Busy: the target takes no job now (more load than counted, blocked,
	// draining, or a refusal of no known kind). Gossip catches up within
	// seconds.
	Busy Refusal = iota + 1
	// CPUIncompatible: the target's CPU cannot run what jobs may use on
	// this node. That lasts as long as both machines do.
	CPUIncompatible
	// Unreachable: the target did not answer, is not a live member, or
	// left the cluster during the move.
	Unreachable
)

func (r Refusal) String() string {
	switch r {
	case Busy:
		return "busy"
	case CPUIncompatible:
		return "cpu-incompatible"
	case Unreachable:
		return "unreachable"
	}
	return fmt.Sprintf("Refusal(%d)", int(r))
}

// RefusedError is a move that its target turned down, or that could not
// reach it; Err says how. Nothing moved: the job runs here still.
type RefusedError struct {
	Kind Refusal
	Err  error
}

func (e *RefusedError) Error() string { return e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// backoff is how long to leave something alone after failures in a row:
// first after the first, twice as long after each further one, at most max.
type backoff struct{ first, max time.Duration }

// after is the wait after the nth failure in a row (n ≥ 1).
func (b backoff) after(n int) time.Duration {
	d := b.first
	for i := 1; i < n && d < b.max; i++ {
		d *= 2
	}
	return min(d, b.max)
}

// The waits after failures. A target is left alone per kind of refusal:
// a busy one only until gossip has surely caught up, one that did not
// answer longer, one whose CPU cannot run this node's jobs far longer (the
// check compares the two machines, so it fails for every job from here).
// A move that failed otherwise (CRIU, what the job holds, the job ended)
// leaves that job alone, not the target: such a failure may pass or last.
var (
	targetBackoff = map[Refusal]backoff{
		Busy:            {2 * time.Second, 30 * time.Second},
		Unreachable:     {10 * time.Second, 2 * time.Minute},
		CPUIncompatible: {10 * time.Minute, time.Hour},
	}
	jobBackoff = backoff{10 * time.Second, 5 * time.Minute}
)

// defaultPeriod is how often Run looks for jobs to send elsewhere,
// besides right after each move ends and on Wake.
const defaultPeriod = 2 * time.Second

// maxOutgoing is how many moves a node makes at once, each to a
// different target. The node's dumps take turns (migrate.Node holds one
// dump at a time), so a second move dumps its job while the first one's
// images travel and are restored: on the bench (9 jobs on one of 3 VMs)
// the six moves that spread them took 11 to 12 s instead of 14. Two
// dumps at once would share one starved CPU and make every frozen job
// wait longer. Four moves at once, two to each target, spread them no
// sooner (the last ended after 11 to 12 s, against 9 with two): their
// setups (the target's admission, CRIU's start) shared that CPU too.
const maxOutgoing = 2

// admissionTTL is how long a target's own count on admission outranks
// gossip that shows less (gossip carries a load change within a second
// or so).
const admissionTTL = 3 * time.Second

// placeWindow is how long a placement counts as load on its node, until
// that node's own gossip shows it.
const placeWindow = 10 * time.Second

// Executor runs the policy on one node: each period, right after each of
// its moves ends, and when woken, it reads the cluster and the node's
// jobs, asks Decide for a move and has the Migrator make it, leaving
// alone for a while the targets that refuse and the jobs whose moves
// fail. It also holds the node's mode (blocked, draining, balancing on or
// off) and places new jobs started here.
type Executor struct {
	Self      string           // this node's name (required)
	Cluster   Cluster          // required
	Residents Residents        // required by Run
	Migrator  Migrator         // required by Run
	Logger    *slog.Logger     // nil: slog.Default()
	Now       func() time.Time // nil: time.Now
	Params    Params           // the policy's tuning; zero: its defaults
	Period    time.Duration    // how often Run looks besides after moves and Wake; 0: 2s
	// Event records the decisions, refusals and failures in the
	// cluster's event stream (events.go); nil: none.
	Event func(kind string, fields map[string]any)

	off      atomic.Bool // drift balance off
	blocked  atomic.Bool // drift block: no new jobs or migrations here
	draining atomic.Bool // drift drain: every job leaves

	wakeOnce sync.Once
	wake     chan struct{} // look again now

	mu       sync.Mutex
	due      time.Time            // when a job the last look found too new to move may move; zero: none
	failed   map[string]strike    // jobs whose last moves failed, left alone a while
	refused  map[string]strike    // targets that refused, left alone a while
	admitted map[string]admission // the load each target reported when it last took a job from here
	inflight map[string]string    // moves under way: job → target

	placeMu sync.Mutex
	placed  pending // recent placements by node
}

// strike is a run of failures (of one kind, for a target) and when to
// try again.
type strike struct {
	kind  Refusal // for a target
	n     int     // failures in a row
	retry time.Time
}

// admission is a target's load as it reported it on taking a job, which
// counts until gossip has surely caught up.
type admission struct {
	load int
	at   time.Time
}

func (e *Executor) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

func (e *Executor) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Executor) wakeCh() chan struct{} {
	e.wakeOnce.Do(func() { e.wake = make(chan struct{}, 1) })
	return e.wake
}

// Wake makes Run look again now; it does not block.
func (e *Executor) Wake() {
	select {
	case e.wakeCh() <- struct{}{}:
	default:
	}
}

// SetBalancing turns automatic balancing on this node on or off. A
// draining node sends its jobs away either way.
func (e *Executor) SetBalancing(on bool) { e.off.Store(!on) }

// Balancing reports whether automatic balancing is on.
func (e *Executor) Balancing() bool { return !e.off.Load() }

// SetMode blocks or unblocks this node and starts or stops its draining;
// a nil field stays as it is. Run looks again at once.
func (e *Executor) SetMode(blocked, draining *bool) {
	if blocked != nil {
		e.blocked.Store(*blocked)
	}
	if draining != nil {
		e.draining.Store(*draining)
	}
	e.Wake()
}

// Mode is what the node gossips about itself: whether it is blocked (a
// draining node is blocked too) and whether it is draining.
func (e *Executor) Mode() (blocked, draining bool) {
	return e.blocked.Load() || e.draining.Load(), e.draining.Load()
}

// Accepting says whether this node takes new jobs and migrations, and if
// not, why and what to do.
func (e *Executor) Accepting() (bool, string) {
	switch {
	case e.draining.Load():
		return false, e.Self + " is draining: it takes no jobs (drift unblock " + e.Self + ")"
	case e.blocked.Load():
		return false, e.Self + " is blocked: it takes no jobs (drift unblock " + e.Self + ")"
	}
	return true, ""
}

// Moving lists, in order, the jobs whose moves from here are under way:
// until a move ends, its job may have stopped running here but is not
// yet committed on its target.
func (e *Executor) Moving() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.inflight))
	for id := range e.inflight {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Run decides and starts moves each period, again whenever a move ends
// and on Wake, until ctx ends; moves under way finish (or fail, leaving
// their job here) before it returns.
func (e *Executor) Run(ctx context.Context) error {
	period := e.Period
	if period <= 0 {
		period = defaultPeriod
	}
	t := time.NewTicker(period)
	defer t.Stop()
	// due fires when a job that is too new to move now may move: a
	// burst started here spreads as soon as the policy allows, not at
	// the next period.
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-due.C:
		case <-e.wakeCh():
		}
		for {
			mv, expect, ok := e.next()
			if !ok {
				break
			}
			wg.Go(func() {
				defer e.Wake()
				e.move(ctx, mv, expect)
			})
		}
		if d := e.dueIn(); d > 0 && d < period {
			due.Reset(d)
		}
	}
}

// dueIn is how long until the first of the jobs that the last look found
// too new to move may move; 0: none.
func (e *Executor) dueIn() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d := e.due.Sub(e.now()); d > 0 {
		return d
	}
	return 0
}

// next returns the next move to start, if any, and the number of jobs
// the target is counted to have: moves under way count on their targets
// and no longer here, a target with a move under way gets no other, and
// targets and jobs that failed lately are left out. The move counts as
// under way from here on: move must follow.
func (e *Executor) next() (Move, int, bool) {
	if e.off.Load() && !e.draining.Load() {
		return Move{}, 0, false
	}
	nodes := coarsen(e.Cluster.Nodes())
	if _, draining := e.Mode(); !draining && !mayMove(nodes, e.Self, e.Params) {
		return Move{}, 0, false // every node is as busy as this one: no need to read the jobs
	}
	now := e.now()
	residents := e.Residents.Residents()
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.inflight) >= maxOutgoing {
		return Move{}, 0, false
	}
	busy := map[string]bool{}
	for _, to := range e.inflight {
		busy[to] = true
	}
	for id := range e.failed { // forget jobs that ended or left
		if _, moving := e.inflight[id]; !moving && !slices.ContainsFunc(residents, func(r Resident) bool { return r.ID == id }) {
			delete(e.failed, id)
		}
	}
	// The jobs here that are not already on their way elsewhere.
	here := slices.DeleteFunc(slices.Clone(residents), func(r Resident) bool {
		_, moving := e.inflight[r.ID]
		return moving
	})
	speed := 1.0
	for _, n := range nodes {
		if n.Name == e.Self && n.Speed > 0 {
			speed = n.Speed
		}
	}
	var js []Job
	p := e.Params.withDefaults()
	e.due = time.Time{}
	for _, r := range here {
		if f, ok := e.failed[r.ID]; ok && now.Before(f.retry) {
			continue
		}
		if at := r.Since.Add(p.stay(r.Moves)); at.After(now) && (e.due.IsZero() || at.Before(e.due)) {
			e.due = at
		}
		js = append(js, Job{ID: r.ID, Node: e.Self, CPU: r.CPU, Rate: r.Ran * speed, RSS: r.RSS, Age: now.Sub(r.Since),
			Resident: now.Sub(r.Since), Moves: r.Moves, Stay: r.Stay, Remaining: r.Remaining, Work: r.Work})
	}
	for i := range nodes {
		n := &nodes[i]
		if n.Name == e.Self { // our own mode and jobs, fresher than gossip
			blocked, draining := e.Mode()
			n.Accepts = n.Accepts && !blocked
			n.Draining = draining
			n.Runnable = 0
			for _, r := range here {
				if !r.Waiting {
					n.Runnable++
				}
			}
			continue
		}
		if a, ok := e.admitted[n.Name]; ok && now.Sub(a.at) < admissionTTL {
			n.Runnable = max(n.Runnable, float64(a.load))
		}
		if busy[n.Name] {
			n.Runnable++
			n.Accepts = false
		}
		if s, ok := e.refused[n.Name]; ok && now.Before(s.retry) {
			n.Accepts = false
		}
	}
	mv, ok := Decide(nodes, js, e.Self, e.Params)
	if !ok {
		return Move{}, 0, false
	}
	var expect int
	for _, n := range nodes {
		if n.Name == mv.To {
			expect = int(n.Runnable)
		}
	}
	if e.inflight == nil {
		e.inflight = map[string]string{}
	}
	e.inflight[mv.Job] = mv.To
	return mv, expect, true
}

// move makes a move that next decided and records how it went.
func (e *Executor) move(ctx context.Context, mv Move, expect int) {
	e.log().Info("balance: moving a job", "job", mv.Job, "to", mv.To, "expect", expect, "why", mv.Reason)
	e.record(decisionEvent(mv, expect))
	res, err := e.Migrator.Migrate(ctx, mv, expect)
	e.done(mv, res, err)
}

// done records how a move went: a refusal leaves its target alone a
// while, another failure its job, a success tells what the target runs.
func (e *Executor) done(mv Move, res Moved, err error) {
	now := e.now()
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.inflight, mv.Job)
	var re *RefusedError
	switch {
	case errors.As(err, &re):
		b, ok := targetBackoff[re.Kind]
		if !ok { // a kind this Executor does not know: it may pass
			b = targetBackoff[Busy]
		}
		s := addStrike(&e.refused, mv.To, re.Kind, b, now)
		e.record(refusalEvent(mv, re.Kind.String(), s, now, err))
		e.log().Info("balance: target refused; the job stays and the target is left alone a while",
			"job", mv.Job, "to", mv.To, "kind", re.Kind, "refusals", s.n, "retry_in", s.retry.Sub(now), "err", err)
	case err != nil:
		s := addStrike(&e.failed, mv.Job, 0, jobBackoff, now)
		e.record(refusalEvent(mv, "failed", s, now, err))
		e.log().Warn("balance: move failed; the job stays and is left alone a while",
			"job", mv.Job, "to", mv.To, "failures", s.n, "retry_in", s.retry.Sub(now), "err", err)
	default:
		delete(e.failed, mv.Job)
		delete(e.refused, mv.To)
		if e.admitted == nil {
			e.admitted = map[string]admission{}
		}
		e.admitted[mv.To] = admission{load: res.TargetLoad, at: now}
		e.log().Info("balance: moved", "job", mv.Job, "to", mv.To, "target_load", res.TargetLoad, "freeze", res.Freeze, "total", res.Total)
	}
}

// addStrike counts one more failure of kind for key in *m and sets when to
// try again. A run of failures goes on while they come within b.max of
// the previous one's retry time; a failure of another kind, or one after
// a long quiet, starts a new run.
func addStrike(m *map[string]strike, key string, kind Refusal, b backoff, now time.Time) strike {
	if *m == nil {
		*m = map[string]strike{}
	}
	s, ok := (*m)[key]
	if !ok || s.kind != kind || now.After(s.retry.Add(b.max)) {
		s = strike{kind: kind}
	}
	s.n++
	s.retry = now.Add(b.after(s.n))
	(*m)[key] = s
	return s
}

// Place chooses the node for a new job started here: where it would run
// fastest, this node when that is as good. Placements of the last few
// seconds count as load on their node until gossip shows them, so that
// jobs started in a burst spread out.
func (e *Executor) Place() (node, reason string, err error) {
	e.placeMu.Lock()
	defer e.placeMu.Unlock()
	now := e.now()
	view := coarsen(e.Cluster.Nodes())
	for i := range view {
		view[i].Runnable += float64(e.placed.count(view[i].Name, now, placeWindow))
	}
	node, reason, err = Place(view, e.Self, 0, e.Params)
	if err == nil {
		e.placed.add(node, now, placeWindow)
	}
	return node, reason, err
}

// coarsen rounds every node's speed with coarseSpeed against the fastest
// node's, in place, and returns nodes.
func coarsen(nodes []Node) []Node {
	fastest := 0.0
	for _, n := range nodes {
		fastest = max(fastest, n.Speed)
	}
	for i := range nodes {
		nodes[i].Speed = coarseSpeed(nodes[i].Speed, fastest)
	}
	return nodes
}

// coarseSpeed counts a node's speed in halvings below the fastest node's:
// a node is half as fast only when it measures at most half the fastest.
// The speed benchmark is a few milliseconds of work, and on shared or
// busy hardware it reads tens of percent low; moving jobs on such noise
// would make them wander.
func coarseSpeed(s, fastest float64) float64 {
	if s <= 0 || fastest <= 0 {
		return s
	}
	return fastest / math.Exp2(math.Floor(math.Log2(fastest/s)))
}

// pending counts, per node, events of the last window: jobs this node has
// just placed there, which count as load on that node until its own
// gossip shows them, so that a burst of drift run does not pile onto one
// machine. The zero value is empty; the caller serialises its use.
type pending struct {
	events map[string][]time.Time
}

// add records an event for node at now.
func (p *pending) add(node string, now time.Time, window time.Duration) {
	if p.events == nil {
		p.events = map[string][]time.Time{}
	}
	p.events[node] = append(p.prune(node, now, window), now)
}

// count is the number of node's events within the window before now.
func (p *pending) count(node string, now time.Time, window time.Duration) int {
	return len(p.prune(node, now, window))
}

// prune drops node's events older than window.
func (p *pending) prune(node string, now time.Time, window time.Duration) []time.Time {
	if p.events == nil {
		return nil
	}
	kept := p.events[node][:0]
	for _, t := range p.events[node] {
		if now.Sub(t) < window {
			kept = append(kept, t)
		}
	}
	p.events[node] = kept
	return kept
}
