package sim

import (
	"fmt"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/balance"
)

// batch is n equal CPU-bound jobs of work seconds each, all started on home at t=0.
func batch(n int, work float64, home string) []JobSpec {
	var js []JobSpec
	for i := range n {
		js = append(js, JobSpec{ID: fmt.Sprintf("j%d", i), Work: work, RSS: 64 << 20, Home: home})
	}
	return js
}

func nodes(n int) []NodeSpec {
	var ns []NodeSpec
	for i := range n {
		ns = append(ns, NodeSpec{Name: fmt.Sprintf("n%d", i), Cores: 1, Speed: 1})
	}
	return ns
}

func TestBalancingSpreadsABatch(t *testing.T) {
	cfg := Config{Nodes: nodes(3), Jobs: batch(6, 300, "n0")}
	off := Run(cfg)
	cfg.Balance = true
	on := Run(cfg)
	t.Logf("off: %v", off)
	t.Logf("on:  %v", on)
	if off.Migrations != 0 {
		t.Errorf("without balancing %d migrations, want 0", off.Migrations)
	}
	if off.Ratio() < 2.9 {
		t.Errorf("without balancing makespan/ideal = %.2f, want ~3 (everything on one of three nodes)", off.Ratio())
	}
	if on.Ratio() > 1.25 {
		t.Errorf("with balancing makespan/ideal = %.2f, want within 1.25", on.Ratio())
	}
	if on.MaxMoves > 2 {
		t.Errorf("a job moved %d times, want at most 2", on.MaxMoves)
	}
}

func TestFastNodeGetsMore(t *testing.T) {
	ns := nodes(2)
	ns[1].Speed = 3
	on := Run(Config{Nodes: ns, Jobs: batch(8, 120, "n0"), Balance: true})
	// Ideal: 960 s of work over capacity 4 = 240 s.
	if on.Ratio() > 1.3 {
		t.Errorf("fast node: %v, want within 1.3 of ideal", on)
	}
}

func TestPinnedJobsNeverMove(t *testing.T) {
	js := batch(4, 200, "n0")
	for i := range js {
		js[i].Stay = true
	}
	r := Run(Config{Nodes: nodes(2), Jobs: js, Balance: true})
	if r.Migrations != 0 {
		t.Errorf("pinned jobs: %d migrations, want 0", r.Migrations)
	}
}

func TestPlacement(t *testing.T) {
	var js []JobSpec
	for i := range 9 {
		js = append(js, JobSpec{ID: fmt.Sprint(i), Arrive: time.Duration(i) * time.Second, Work: 100, RSS: 32 << 20, Home: "n0"})
	}
	r := Run(Config{Nodes: nodes(3), Jobs: js, Place: true})
	if r.Ratio() > 1.2 || r.Migrations != 0 {
		t.Errorf("placement alone: %v, want within 1.2 of ideal and no migration", r)
	}
}

func TestThousandNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("1000-node simulation in -short mode")
	}
	// 3000 jobs started on the first 100 nodes of 1000.
	var js []JobSpec
	for i := range 3000 {
		js = append(js, JobSpec{ID: fmt.Sprint(i), Work: 600, RSS: 64 << 20, Home: fmt.Sprintf("n%d", i%100)})
	}
	r := Run(Config{Nodes: nodes(1000), Jobs: js, Balance: true})
	t.Logf("1000 nodes: %v", r)
	if r.Ratio() > 1.25 {
		t.Errorf("1000 nodes: %v, want within 1.25 of ideal", r)
	}
}

// tasks is n equal queued tasks of work seconds each.
func tasks(n int, work float64) []JobSpec {
	js := batch(n, work, "")
	for i := range js {
		js[i].RSS = 4 << 20
	}
	return js
}

func TestQueueFillsCoresWithoutMoves(t *testing.T) {
	r := Run(Config{Nodes: nodes(3), Queue: tasks(30, 10), Balance: true})
	if r.Migrations != 0 || r.Ratio() > 1.01 {
		t.Errorf("30 equal tasks queued on 3 equal nodes: %v, want the ideal and no migration", r)
	}
}

// TestStarvedNodeEndGame: a node that gives most of its CPU to other work
// (a head serving storage) is slow for its tasks, which counts and speeds
// do not show. With the jobs' measured rates the balancer sends its last
// task to a node that has gone idle; without them, nothing moves and the
// sweep waits for it.
func TestStarvedNodeEndGame(t *testing.T) {
	ns := nodes(3)
	ns[0].Overhead = 0.8
	cfg := Config{Nodes: ns, Queue: tasks(30, 10), Balance: true}
	blind := Run(cfg)
	cfg.Observe = true
	seen := Run(cfg)
	t.Logf("blind: %v", blind)
	t.Logf("measured: %v", seen)
	if blind.Migrations != 0 {
		t.Errorf("without measured rates: %d migrations, want none (counts are equal)", blind.Migrations)
	}
	if seen.Migrations == 0 || seen.Makespan >= blind.Makespan {
		t.Errorf("with measured rates: %v, want a move and a shorter makespan than %v", seen, blind.Makespan)
	}
	if seen.MaxMoves > 1 {
		t.Errorf("with measured rates a task moved %d times, want at most once", seen.MaxMoves)
	}
}

func TestBusySourceAndNoise(t *testing.T) {
	js := batch(9, 30, "n1")
	for i := range js {
		js[i].RSS = 4 << 20
	}
	cfg := Config{Nodes: nodes(3), Jobs: js, Balance: true}
	calm := Run(cfg)
	cfg.BusySource, cfg.Noise = 0.33, 0.2
	rough := Run(cfg)
	t.Logf("calm: %v", calm)
	t.Logf("busy source, noise: %v", rough)
	if rough.Makespan <= calm.Makespan {
		t.Errorf("moves from a busy source and wandering shares: makespan %s, want longer than the calm %s", rough.Makespan, calm.Makespan)
	}
	if rough.Ratio() > 1.3 {
		t.Errorf("busy source and noise: %v, want within 1.3 of ideal", rough)
	}
}

func TestPareto(t *testing.T) {
	js := Pareto(10000, 2, 5, 0, 1)
	sum, least := 0.0, js[0].Work
	for _, j := range js {
		sum += j.Work
		least = min(least, j.Work)
	}
	if mean := sum / float64(len(js)); least < 5 || mean < 8 || mean > 12 {
		t.Errorf("Pareto(shape 2, shortest 5): shortest %.2f, mean %.2f; want at least 5 and a mean near 10", least, mean)
	}
}

// TestTaskAhead: when a task takes seconds to start, a node that waits
// for a free core before taking the next leaves its core idle that long
// each time; one task taken ahead hides it.
func TestTaskAhead(t *testing.T) {
	cfg := Config{Nodes: nodes(3), Queue: tasks(30, 10), TaskStart: 3 * time.Second}
	waits := Run(cfg)
	cfg.Ahead = 1
	ahead := Run(cfg)
	t.Logf("no task ahead: %v", waits)
	t.Logf("one ahead:     %v", ahead)
	if waits.Ratio() < 1.25 {
		t.Errorf("3 s starts of 10 s tasks without a task ahead: %v, want at least 1.25x ideal", waits)
	}
	if ahead.Ratio() > 1.1 {
		t.Errorf("3 s starts of 10 s tasks with one ahead: %v, want within 1.1x ideal", ahead)
	}
}

// TestGiveBack: a task taken ahead behind a long one waits for it while
// another node idles; given back, it runs there.
func TestGiveBack(t *testing.T) {
	q := tasks(3, 10)
	q[0].Work = 100 // the first node to look takes it, and the next ahead
	cfg := Config{Nodes: nodes(2), Queue: q, TaskStart: time.Second, Ahead: 1}
	kept := Run(cfg)
	cfg.GiveBack = true
	given := Run(cfg)
	t.Logf("kept:       %v", kept)
	t.Logf("given back: %v (%d)", given, given.GivenBack)
	if kept.Makespan < 105*time.Second {
		t.Errorf("without giving back, the task behind the 100 s one ran at %v: want after it", kept.Makespan)
	}
	if given.GivenBack != 1 || given.Makespan > 102*time.Second {
		t.Errorf("given back %d, makespan %v: want 1, and the long task last", given.GivenBack, given.Makespan)
	}
}

// TestTaskAheadIsNoLoad: a task started ahead waits for a core and runs
// nothing, so its node does not count it as load (the arrays service
// marks it waiting). Counted, it made the node look crowded while it
// started, the balancer sent the running task away, the move landed on
// a node with a task of its own, and so on: in a sweep with jobs free to
// move after 1 s, tasks moved up to 6 times and the balancer made the
// sweep slower than the queue alone.
func TestTaskAheadIsNoLoad(t *testing.T) {
	var ns []NodeSpec
	for i := range 50 {
		sp := 1.0
		if i%4 == 3 {
			sp = 0.5
		}
		ns = append(ns, NodeSpec{Name: fmt.Sprintf("n%d", i), Cores: 1, Speed: sp})
	}
	cfg := Config{Nodes: ns, Queue: Pareto(5000, 2, 5, 16<<20, 0), Seed: 0, Noise: 0.2, BusySource: 0.05, Observe: true,
		TaskStart: 3 * time.Second, Ahead: 1, GiveBack: true, Params: balance.Params{FirstMove: time.Second}}
	plain := Run(cfg)
	cfg.Balance = true
	bal := Run(cfg)
	t.Logf("queue alone:        %v", plain)
	t.Logf("queue and balancer: %v", bal)
	if bal.MaxMoves > 1 || bal.Migrations > 5000/100 || float64(bal.Makespan) > 1.05*float64(plain.Makespan) {
		t.Errorf("with the balancer: %v; want no task moved twice, at most one move per 100 tasks, and within 5%% of the queue alone (%v)", bal, plain.Makespan)
	}
}
