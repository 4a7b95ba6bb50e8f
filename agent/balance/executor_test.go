package balance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// world is everything the Executor reads and does through its
// interfaces: the cluster as gossiped, this node's jobs, the clock and
// the targets' answers to moves. Gossip never changes unless a test
// changes it, as when it lags behind the moves.
type world struct {
	mu      sync.Mutex
	t0, now time.Time
	nodes   []Node
	jobs    []Resident
	answers map[string][]answer // per target, the answers to its next moves; none left: it takes the job
	log     bytes.Buffer
}

// answer is a target's answer to a move: an error, or the load it
// reports on taking the job (0: what the Executor expected, plus this job).
type answer struct {
	err  error
	load int
}

func newWorld(nodes []Node, jobs ...string) *world {
	w := &world{t0: time.Unix(1e9, 0), nodes: nodes}
	w.now = w.t0
	for _, id := range jobs {
		// CPU-bound 64 MiB jobs that arrived long ago and never moved.
		w.jobs = append(w.jobs, Resident{ID: id, CPU: 1, RSS: 64 << 20, Since: w.t0.Add(-time.Hour)})
	}
	return w
}

func (w *world) Nodes() []Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.nodes)
}

func (w *world) Residents() []Resident {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.jobs)
}

func (w *world) Now() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.now
}

func (w *world) Migrate(ctx context.Context, mv Move, expect int) (Moved, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	a := answer{load: expect + 1}
	if q := w.answers[mv.To]; len(q) > 0 {
		a, w.answers[mv.To] = q[0], q[1:]
	}
	if a.err != nil {
		return Moved{}, a.err
	}
	w.jobs = slices.DeleteFunc(w.jobs, func(r Resident) bool { return r.ID == mv.Job })
	return Moved{TargetLoad: a.load}, nil
}

func (w *world) executor() *Executor {
	return &Executor{Self: "w1", Cluster: w, Residents: w, Migrator: w, Now: w.Now,
		Logger: slog.New(slog.NewTextHandler(&w.log, nil))}
}

// look is one look of the executor at time at (since the test began):
// what it moves, "job→target@expect", to its end, or "" for nothing.
func (w *world) look(e *Executor, at time.Duration) string {
	w.mu.Lock()
	w.now = w.t0.Add(at)
	w.mu.Unlock()
	mv, expect, ok := e.next()
	if !ok {
		return ""
	}
	e.move(context.Background(), mv, expect)
	return fmt.Sprintf("%s→%s@%d", mv.Job, mv.To, expect)
}

var (
	errBusy        = &RefusedError{Kind: Busy, Err: errors.New("w2 is busier than the source counted")}
	errCPU         = &RefusedError{Kind: CPUIncompatible, Err: errors.New("w2 cannot run it: criu cpuinfo check failed")}
	errUnreachable = &RefusedError{Kind: Unreachable, Err: errors.New("dial tcp 10.0.0.2:7947: connection refused")}
	errCRIU        = errors.New("criu dump: exit status 1")
)

func TestExecutorDecides(t *testing.T) {
	on := func(b bool) *bool { return &b }
	slow := node("w2", 0)
	slow.Speed = 0.6 // measured low by noise: as fast as w1
	w1 := node("w1", 0)
	tests := []struct {
		name  string
		nodes []Node
		jobs  []string
		setup func(*Executor)
		want  string
	}{
		{"spreads to the idlest node", []Node{w1, node("w2", 1), node("w3", 0)}, []string{"a", "b", "c", "d"}, nil, "a→w3@0"},
		{"balanced: nothing moves", []Node{w1, node("w2", 1), node("w3", 1)}, []string{"a"}, nil, ""},
		{"its own jobs, not gossip, are its load", []Node{node("w1", 9), node("w2", 1)}, []string{"a"}, nil, ""},
		{"balancing off: nothing moves", []Node{w1, node("w2", 0)}, []string{"a", "b", "c", "d"},
			func(e *Executor) { e.SetBalancing(false) }, ""},
		{"balancing off, draining: jobs leave all the same", []Node{w1, node("w2", 1), node("w3", 1)}, []string{"a"},
			func(e *Executor) { e.SetBalancing(false); e.SetMode(nil, on(true)) }, "a→w2@1"},
		{"a blocked node still sends work away", []Node{w1, node("w2", 0)}, []string{"a", "b", "c", "d"},
			func(e *Executor) { e.SetMode(on(true), nil) }, "a→w2@0"},
		{"a node measured a little slower counts as as fast", []Node{w1, slow}, []string{"a", "b"}, nil, "a→w2@0"},
		{"a second move at once goes to another target", []Node{w1, node("w2", 0), node("w3", 0)}, []string{"a", "b", "c", "d"},
			func(e *Executor) {
				if mv, _, _ := e.next(); mv.To != "w2" {
					panic("the first move goes to " + mv.To)
				}
			}, "b→w3@0"},
		{"no third move at once", []Node{w1, node("w2", 0), node("w3", 0), node("w4", 0)}, []string{"a", "b", "c", "d"},
			func(e *Executor) { e.next(); e.next() }, ""},
		{"a target with a move under way gets no second", []Node{w1, node("w2", 0)}, []string{"a", "b", "c", "d"},
			func(e *Executor) { e.next() }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(tt.nodes, tt.jobs...)
			e := w.executor()
			if tt.setup != nil {
				tt.setup(e)
			}
			if got := w.look(e, 0); got != tt.want {
				t.Errorf("look = %q, want %q\nlog:\n%s", got, tt.want, &w.log)
			}
		})
	}
}

// TestExecutorBackoff runs looks at given times (since the test began)
// and checks what each moves. Unless a test says otherwise, w1 runs jobs
// a to d and w2 is idle.
func TestExecutorBackoff(t *testing.T) {
	type look struct {
		at   time.Duration
		want string
	}
	tests := []struct {
		name    string
		nodes   []Node // nil: w1 and an idle w2
		answers map[string][]answer
		looks   []look
		log     []string // in the log
	}{
		{
			name:    "a busy target is left alone 2 s, then twice as long",
			answers: map[string][]answer{"w2": {{err: errBusy}, {err: errBusy}}},
			looks:   []look{{0, "a→w2@0"}, {0, ""}, {1999 * time.Millisecond, ""}, {2 * time.Second, "a→w2@0"}, {5 * time.Second, ""}, {6 * time.Second, "a→w2@0"}},
			log:     []string{"kind=busy refusals=1 retry_in=2s", "kind=busy refusals=2 retry_in=4s", `msg="balance: moved" job=a to=w2`},
		},
		{
			name:    "an unreachable target is left alone 10 s",
			answers: map[string][]answer{"w2": {{err: errUnreachable}}},
			looks:   []look{{0, "a→w2@0"}, {9 * time.Second, ""}, {10 * time.Second, "a→w2@0"}},
			log:     []string{"kind=unreachable refusals=1 retry_in=10s"},
		},
		{
			name:    "a target whose CPU cannot run the jobs is left alone 10 min",
			answers: map[string][]answer{"w2": {{err: errCPU}, {err: errCPU}}},
			looks:   []look{{0, "a→w2@0"}, {9 * time.Minute, ""}, {10 * time.Minute, "a→w2@0"}, {29 * time.Minute, ""}, {30 * time.Minute, "a→w2@0"}},
			log:     []string{"kind=cpu-incompatible refusals=1 retry_in=10m0s", "kind=cpu-incompatible refusals=2 retry_in=20m0s"},
		},
		{
			name:    "a refusal of no known kind counts as busy",
			answers: map[string][]answer{"w2": {{err: &RefusedError{Err: errors.New("w2 said no")}}}},
			looks:   []look{{0, "a→w2@0"}, {0, ""}, {2 * time.Second, "a→w2@0"}},
		},
		{
			name:    "a refused job goes to another target at once",
			nodes:   []Node{node("w1", 0), node("w2", 0), node("w3", 0)},
			answers: map[string][]answer{"w2": {{err: errBusy}}},
			looks:   []look{{0, "a→w2@0"}, {0, "a→w3@0"}},
		},
		{
			name:    "a failed move leaves its job alone 10 s, not the target",
			answers: map[string][]answer{"w2": {{err: errCRIU}, {err: errCRIU}, {err: errCRIU}, {err: errCRIU}}},
			looks: []look{{0, "a→w2@0"}, {0, "b→w2@0"}, {0, "c→w2@0"}, {0, "d→w2@0"}, {0, ""},
				{9 * time.Second, ""}, {10 * time.Second, "a→w2@0"}},
			log: []string{`msg="balance: move failed; the job stays and is left alone a while" job=a to=w2 failures=1 retry_in=10s`},
		},
		{
			name:    "a refusal after a long quiet starts over at 2 s",
			answers: map[string][]answer{"w2": {{err: errBusy}, {err: errBusy}}},
			looks:   []look{{0, "a→w2@0"}, {time.Hour, "a→w2@0"}, {time.Hour + 2*time.Second, "a→w2@0"}},
		},
		{
			name:    "a refusal of another kind starts over",
			answers: map[string][]answer{"w2": {{err: errUnreachable}, {err: errBusy}}},
			looks:   []look{{0, "a→w2@0"}, {10 * time.Second, "a→w2@0"}, {12 * time.Second, "a→w2@0"}},
		},
		{
			name:  "a target's load on admission counts for 3 s over gossip that shows less",
			nodes: []Node{node("w1", 0), node("w2", 0), node("w3", 0)},
			// w2 took jobs from elsewhere too: it reports 3.
			answers: map[string][]answer{"w2": {{load: 3}}},
			looks:   []look{{0, "a→w2@0"}, {0, "b→w3@0"}, {2 * time.Second, ""}, {3 * time.Second, "c→w2@0"}},
		},
		{
			name:    "the count a target is expected to have includes its admission",
			nodes:   []Node{node("w1", 0), node("w2", 0)},
			answers: map[string][]answer{"w2": {{load: 1}, {load: 2}}},
			looks:   []look{{0, "a→w2@0"}, {0, "b→w2@1"}, {0, ""}, {5 * time.Second, "c→w2@0"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := tt.nodes
			if nodes == nil {
				nodes = []Node{node("w1", 0), node("w2", 0)}
			}
			w := newWorld(nodes, "a", "b", "c", "d")
			w.answers = tt.answers
			e := w.executor()
			for i, l := range tt.looks {
				if got := w.look(e, l.at); got != l.want {
					t.Fatalf("look %d at +%s = %q, want %q\nlog:\n%s", i, l.at, got, l.want, &w.log)
				}
			}
			for _, s := range tt.log {
				if !strings.Contains(w.log.String(), s) {
					t.Errorf("log lacks %q:\n%s", s, &w.log)
				}
			}
		})
	}
}

func TestBackoffAfter(t *testing.T) {
	for _, tt := range []struct {
		name string
		b    backoff
		n    int
		want time.Duration
	}{
		{"busy", targetBackoff[Busy], 1, 2 * time.Second},
		{"busy", targetBackoff[Busy], 4, 16 * time.Second},
		{"busy", targetBackoff[Busy], 5, 30 * time.Second},
		{"busy", targetBackoff[Busy], 100, 30 * time.Second},
		{"unreachable", targetBackoff[Unreachable], 1, 10 * time.Second},
		{"unreachable", targetBackoff[Unreachable], 5, 2 * time.Minute},
		{"cpu", targetBackoff[CPUIncompatible], 1, 10 * time.Minute},
		{"cpu", targetBackoff[CPUIncompatible], 3, 40 * time.Minute},
		{"cpu", targetBackoff[CPUIncompatible], 4, time.Hour},
		{"job", jobBackoff, 5, 160 * time.Second},
		{"job", jobBackoff, 6, 5 * time.Minute},
	} {
		if got := tt.b.after(tt.n); got != tt.want {
			t.Errorf("%s backoff after %d failures = %s, want %s", tt.name, tt.n, got, tt.want)
		}
	}
}

func TestExecutorForgetsJobsThatLeft(t *testing.T) {
	w := newWorld([]Node{node("w1", 0), node("w2", 0)}, "a", "b")
	w.answers = map[string][]answer{"w2": {{err: errCRIU}}}
	e := w.executor()
	if got := w.look(e, 0); got != "a→w2@0" {
		t.Fatalf("first look = %q, want a→w2@0", got)
	}
	// a ends, and a job of the same id comes back (as it would after a
	// round trip): its past failure no longer holds it.
	w.jobs = w.jobs[:0]
	w.look(e, time.Second)
	w.jobs = append(w.jobs, Resident{ID: "a", CPU: 1, RSS: 64 << 20, Since: w.t0.Add(-time.Hour)}, Resident{ID: "b", CPU: 1, RSS: 64 << 20, Since: w.t0.Add(-time.Hour)})
	if got := w.look(e, 2*time.Second); got != "a→w2@0" {
		t.Errorf("look after a left and came back = %q, want a→w2@0", got)
	}
}

func TestExecutorMode(t *testing.T) {
	on := func(b bool) *bool { return &b }
	tests := []struct {
		name                   string
		blocked, draining      *bool
		wantBlocked, wantDrain bool
		wantAccept             string // "": accepts
	}{
		{"normal", nil, nil, false, false, ""},
		{"blocked", on(true), nil, true, false, "w1 is blocked: it takes no jobs (drift unblock w1)"},
		{"draining", nil, on(true), true, true, "w1 is draining: it takes no jobs (drift unblock w1)"},
		{"unblocked", on(false), on(false), false, false, ""},
	}
	e := &Executor{Self: "w1"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e.SetMode(tt.blocked, tt.draining)
			select {
			case <-e.wakeCh():
			default:
				t.Error("SetMode did not wake Run: the new mode waits for the next period")
			}
			if b, d := e.Mode(); b != tt.wantBlocked || d != tt.wantDrain {
				t.Errorf("Mode() = %v, %v; want %v, %v", b, d, tt.wantBlocked, tt.wantDrain)
			}
			ok, why := e.Accepting()
			if ok != (tt.wantAccept == "") || why != tt.wantAccept {
				t.Errorf("Accepting() = %v, %q; want %q", ok, why, tt.wantAccept)
			}
		})
	}
	if !e.Balancing() {
		t.Error("Balancing() = false on a new Executor, want true")
	}
	e.SetBalancing(false)
	if e.Balancing() {
		t.Error("Balancing() = true after SetBalancing(false)")
	}
}

// blockingWorld is a world whose moves wait until the test lets them end.
type blockingWorld struct {
	*world
	started chan Move
	release chan struct{}
}

func (b blockingWorld) Migrate(ctx context.Context, mv Move, expect int) (Moved, error) {
	b.started <- mv
	<-b.release
	return b.world.Migrate(ctx, mv, expect)
}

func TestExecutorRun(t *testing.T) {
	w := newWorld([]Node{node("w1", 0), node("w2", 0)}, "a", "b", "c", "d")
	bw := blockingWorld{w, make(chan Move), make(chan struct{})}
	e := w.executor()
	e.Migrator = bw
	e.Period = time.Hour // only Wake and the end of a move make it look
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	started := func(what string) Move {
		t.Helper()
		select {
		case mv := <-bw.started:
			return mv
		case <-time.After(10 * time.Second):
			cancel()
			close(bw.release)
			<-done
			t.Fatalf("no %s move started\nlog:\n%s", what, &w.log)
		}
		return Move{}
	}
	e.Wake()
	if mv := started("first"); mv.Job != "a" || mv.To != "w2" {
		t.Errorf("first move = %v, want a to w2", mv)
	}
	bw.release <- struct{}{}
	// The end of a move is a look: the next one starts unasked.
	if mv := started("second"); mv.Job != "b" {
		t.Errorf("second move = %v, want b", mv)
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with a move under way, want it to wait for the move", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(bw.release)
	if err := <-done; err != nil {
		t.Errorf("Run = %v, want nil when its context ends", err)
	}
	if got := len(w.Residents()); got != 2 {
		t.Errorf("jobs left here = %d, want 2 (a and b moved)", got)
	}
}

func TestExecutorPlace(t *testing.T) {
	w := newWorld([]Node{node("w1", 0), node("w2", 0)})
	e := w.executor()
	for i, tt := range []struct {
		at   time.Duration
		want string
	}{
		{0, "w1"},                // an idle home keeps it
		{time.Second, "w2"},      // the first counts on w1 until gossip shows it
		{2 * time.Second, "w1"},  // one each
		{13 * time.Second, "w1"}, // placements 10 s old no longer count
	} {
		w.now = w.t0.Add(tt.at)
		got, why, err := e.Place()
		if err != nil || got != tt.want || why == "" {
			t.Errorf("Place %d at +%s = %q (%q), %v; want %q with a reason", i, tt.at, got, why, err, tt.want)
		}
	}
}

func TestCoarseSpeed(t *testing.T) {
	for _, tt := range []struct{ s, fastest, want float64 }{
		{1.08, 1.08, 1.08},
		{0.75, 1.08, 1.08}, // noise: counts as the fastest
		{0.54, 1.08, 0.54},
		{0.40, 1.08, 0.54},
		{0.26, 1.08, 0.27},
		{0, 1, 0},
	} {
		if got := coarseSpeed(tt.s, tt.fastest); got != tt.want {
			t.Errorf("coarseSpeed(%v, %v) = %v, want %v", tt.s, tt.fastest, got, tt.want)
		}
	}
}

func TestPending(t *testing.T) {
	var p pending
	const window = 10 * time.Second
	t0 := time.Unix(1000, 0)
	if got := p.count("a", t0, window); got != 0 {
		t.Errorf("count before any event = %d, want 0", got)
	}
	p.add("a", t0, window)
	p.add("a", t0.Add(5*time.Second), window)
	p.add("b", t0, window)
	for _, tt := range []struct {
		node string
		at   time.Duration
		want int
	}{{"a", 6 * time.Second, 2}, {"a", 12 * time.Second, 1}, {"b", 9 * time.Second, 1}, {"b", 10 * time.Second, 0}, {"c", 0, 0}} {
		if got := p.count(tt.node, t0.Add(tt.at), window); got != tt.want {
			t.Errorf("count(%s, +%s) = %d, want %d", tt.node, tt.at, got, tt.want)
		}
	}
}

// TestExecutorMeasuredRate: the CPU a job got here, times this node's
// speed, is the rate the policy weighs; a job starved by other work here
// leaves for an idle node, which counts and speeds alone say it would run
// no faster on.
func TestExecutorMeasuredRate(t *testing.T) {
	for _, tt := range []struct {
		name string
		ran  float64
		want string
	}{
		{"not measured: as fast here as there", 0, ""},
		{"ran a full core", 1, ""},
		{"starved to a tenth", 0.1, "a→w2@0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld([]Node{node("w1", 1), node("w2", 0)}, "a")
			w.jobs[0].Ran = tt.ran
			if got := w.look(w.executor(), 0); got != tt.want {
				t.Errorf("look = %q, want %q\nlog:\n%s", got, tt.want, &w.log)
			}
		})
	}
}

// countingWorld counts the reads of this node's jobs.
type countingWorld struct {
	*world
	reads int
}

func (c *countingWorld) Residents() []Resident { c.reads++; return c.world.Residents() }

// On a cluster where every node is as busy as this one, a look reads
// none of this node's jobs (their CPU use costs reads of /proc); once a
// core frees elsewhere, it does, and moves.
func TestExecutorReadsJobsOnlyWhenOneMayMove(t *testing.T) {
	w := newWorld([]Node{node("w1", 2), node("w2", 1), node("w3", 1)}, "a", "b")
	w.nodes[1].Runnable, w.nodes[2].Runnable = 2, 2
	cw := &countingWorld{world: w}
	e := w.executor()
	e.Residents = cw
	if got := w.look(e, time.Minute); got != "" || cw.reads != 0 {
		t.Fatalf("every node has 2 runnable: moved %q, read the jobs %d times; want nothing, 0", got, cw.reads)
	}
	w.mu.Lock()
	w.nodes[2].Runnable = 0
	w.mu.Unlock()
	if got := w.look(e, 2*time.Minute); got == "" || cw.reads == 0 {
		t.Errorf("w3 idle: moved %q, read the jobs %d times; want a move to w3", got, cw.reads)
	}
}

// TestExecutorLooksWhenAJobMayMove: a look that finds jobs too new to
// move looks again as soon as they may, not a period later, so a burst
// started on one node spreads at once.
func TestExecutorLooksWhenAJobMayMove(t *testing.T) {
	w := newWorld([]Node{node("w1", 0), node("w2", 0)})
	e := w.executor()
	e.Now = nil // the real clock: Run's timers run on it
	e.Period = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	started := time.Now()
	w.mu.Lock()
	for _, id := range []string{"a", "b", "c", "d"} {
		w.jobs = append(w.jobs, Resident{ID: id, CPU: 1, RSS: 64 << 20, Since: started})
	}
	w.mu.Unlock()
	e.Wake() // the jobs started: too new to move yet
	for len(w.Residents()) == 4 {
		if time.Since(started) > 10*time.Second {
			t.Fatalf("no move 10 s after the jobs started (they may move after %v; the period is an hour)\nlog:\n%s", e.Params.withDefaults().FirstMove, &w.log)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if took := time.Since(started); took < e.Params.withDefaults().FirstMove {
		t.Errorf("a job moved %v after it started, before the policy's first move at %v", took, e.Params.withDefaults().FirstMove)
	}
	cancel()
	<-done
}
