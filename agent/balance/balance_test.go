package balance

import (
	"strings"
	"testing"
	"time"
)

const gib = 1 << 30

// node is an accepting 1-core reference node with 4 GiB, 3 free.
func node(name string, runnable float64) Node {
	return Node{Name: name, Cores: 1, Speed: 1, Runnable: runnable, MemTotal: 4 * gib, MemFree: 3 * gib, Accepts: true}
}

// busy returns n CPU-bound 64 MiB jobs on a node, old enough to move.
func busy(on string, n int) []Job {
	var js []Job
	for i := range n {
		js = append(js, Job{ID: on + "-" + string(rune('a'+i)), Node: on, CPU: 1, RSS: 64 << 20,
			Age: 5 * time.Minute, Resident: time.Minute})
	}
	return js
}

func TestDecide(t *testing.T) {
	fast := node("fast", 1)
	fast.Speed = 3
	fullMem := node("w1", 2)
	fullMem.MemFree = 100 << 20
	roomy := node("w3", 2)
	roomy.MemFree = 3 * gib
	blocked := node("w2", 0)
	blocked.Accepts = false
	draining := node("w1", 1)
	draining.Draining = true
	young := busy("w1", 6) // moved here 5 s ago
	for i := range young {
		young[i].Resident, young[i].Moves = 5*time.Second, 1
	}
	fresh := busy("w1", 6) // started half a second ago
	for i := range fresh {
		fresh[i].Age, fresh[i].Resident = time.Second/2, time.Second/2
	}
	started := busy("w1", 6) // started 3 s ago, never moved
	for i := range started {
		started[i].Age, started[i].Resident = 3*time.Second, 3*time.Second
	}
	idle := busy("w1", 6) // I/O-bound: they want a tenth of a core each
	for i := range idle {
		idle[i].CPU = 0.1
	}
	pinned := busy("w1", 2)
	for i := range pinned {
		pinned[i].Stay = true
	}
	starved := busy("w1", 1) // the node's other work leaves it a tenth of the core
	starved[0].Rate = 0.1
	fair := busy("w1", 3) // measured as the model says
	for i := range fair {
		fair[i].Rate = 0.34
	}
	slower := busy("w1", 3)
	for i := range slower {
		slower[i].Rate = 0.3
	}
	slowerAlone := busy("w1", 1)
	slowerAlone[0].Rate = 0.6
	starvedMoved := busy("w1", 1)
	starvedMoved[0].Rate, starvedMoved[0].Moves = 0.1, 1
	starvedNew := busy("w1", 1)
	starvedNew[0].Rate, starvedNew[0].Resident = 0.1, 5*time.Second
	endingTasks := busy("w1", 2) // a sweep's tasks, 2 s from their end
	for i := range endingTasks {
		endingTasks[i].Remaining = 2 * time.Second
	}
	longTasks := busy("w1", 2) // a sweep's tasks, a minute from their end
	for i := range longTasks {
		longTasks[i].Remaining = time.Minute
	}
	// A batch's last jobs on a node crowded by its own moves, once the
	// batch's others have ended elsewhere: old, but their work left is
	// known from their like.
	batchEnding := busy("w1", 3) // a second of CPU each: 3 s at a third of a core
	for i := range batchEnding {
		batchEnding[i].Age, batchEnding[i].Resident, batchEnding[i].Work = 2*time.Minute, 2*time.Minute, time.Second
	}
	batchBehind := busy("w1", 3) // 10 s of CPU each: 30 s at a third of a core
	for i := range batchBehind {
		batchBehind[i].Age, batchBehind[i].Resident, batchBehind[i].Work = 2*time.Minute, 2*time.Minute, 10*time.Second
	}
	huge := busy("w1", 2)
	for i := range huge {
		huge[i].RSS = 4 * gib
	}
	tests := []struct {
		name   string
		nodes  []Node
		jobs   []Job
		wantTo string // "" = no move
		reason string
	}{
		{"equal nodes, all on one", []Node{node("w1", 6), node("w2", 0), node("w3", 0)}, busy("w1", 6), "w2", "load:"},
		{"balanced 2/2/2 stays", []Node{node("w1", 2), node("w2", 2), node("w3", 2)}, busy("w1", 2), "", ""},
		{"3/2/1 moves to the lightest", []Node{node("w1", 3), node("w2", 2), node("w3", 1)}, busy("w1", 3), "w3", "load:"},
		{"hysteresis: 3/2/2 stays", []Node{node("w1", 3), node("w2", 2), node("w3", 2)}, busy("w1", 3), "", ""},
		{"one fast node takes work", []Node{node("w1", 2), node("w2", 1), fast}, busy("w1", 2), "fast", "load:"},
		{"nothing beats a fast node", []Node{func() Node { n := fast; n.Name = "w1"; n.Runnable = 2; return n }(), node("w2", 1)}, busy("w1", 2), "", ""},
		{"memory ushering", []Node{fullMem, node("w2", 2), roomy}, busy("w1", 2), "w2", "memory:"},
		{"blocked node gets nothing", []Node{node("w1", 6), blocked}, busy("w1", 6), "", ""},
		{"minimum residence after a move", []Node{node("w1", 6), node("w2", 0)}, young, "", ""},
		{"a new job's CPU use is not known yet", []Node{node("w1", 6), node("w2", 0)}, fresh, "", ""},
		{"a burst spreads at once", []Node{node("w1", 6), node("w2", 0)}, started, "w2", "load:"},
		{"I/O-bound jobs stay", []Node{node("w1", 6), node("w2", 0)}, idle, "", ""},
		{"pinned jobs stay", []Node{node("w1", 2), node("w2", 0)}, pinned, "", ""},
		{"a starved job moves to a free core", []Node{node("w1", 1), node("w2", 1), node("w3", 0)}, starved, "w3", "measured"},
		{"a starved job does not crowd a busy core", []Node{node("w1", 1), node("w2", 1)}, starved, "", ""},
		{"a starved job stays without a better node", []Node{node("w1", 1), node("w2", 9)}, starved, "", ""},
		{"measured as modelled: 3/2/2 stays", []Node{node("w1", 3), node("w2", 2), node("w3", 2)}, fair, "", ""},
		{"measured a little low: 3/1 moves as the model says", []Node{node("w1", 3), node("w2", 1)}, slower, "w2", "load:"},
		{"measured a little low: 1/0 stays", []Node{node("w1", 1), node("w2", 0)}, slowerAlone, "", ""},
		{"a starved job that moved once stays", []Node{node("w1", 1), node("w2", 1), node("w3", 0)}, starvedMoved, "", ""},
		{"a starved job waits for the minimum residence", []Node{node("w1", 1), node("w2", 1), node("w3", 0)}, starvedNew, "", ""},
		{"a task about to end stays", []Node{node("w1", 2), node("w2", 0)}, endingTasks, "", ""},
		{"a task far from its end goes to an idle node", []Node{node("w1", 2), node("w2", 0)}, longTasks, "w2", "load:"},
		{"an old job with a second of work left stays", []Node{node("w1", 3), node("w2", 0)}, batchEnding, "", ""},
		{"an old job behind its like goes to an idle node", []Node{node("w1", 3), node("w2", 0)}, batchBehind, "w2", "load:"},
		{"too big for any target", []Node{node("w1", 2), node("w2", 0)}, huge, "", ""},
		{"drain moves even a balanced node", []Node{draining, node("w2", 1)}, busy("w1", 1), "w2", "draining"},
		{"unknown source", []Node{node("w2", 0)}, busy("w1", 2), "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, ok := Decide(tt.nodes, tt.jobs, "w1", Params{})
			if tt.wantTo == "" {
				if ok {
					t.Errorf("Decide = %v, want no move", m)
				}
				return
			}
			if !ok || m.To != tt.wantTo || m.From != "w1" || !strings.Contains(m.Reason, tt.reason) {
				t.Errorf("Decide = %v (ok=%v), want a move to %s with a reason containing %q", m, ok, tt.wantTo, tt.reason)
			}
		})
	}
}

func TestCostBlocksShortGain(t *testing.T) {
	nodes := []Node{node("w1", 2), node("w2", 0)}
	jobs := busy("w1", 2)
	for i := range jobs {
		jobs[i].Age, jobs[i].Resident, jobs[i].RSS = time.Minute, time.Minute, 2*gib
	}
	// Moving 2 GiB at 10 MB/s takes ~3.5 minutes; the job's expected
	// remaining minute at double speed saves 30 s: not worth it.
	if m, ok := Decide(nodes, jobs, "w1", Params{}); ok {
		t.Errorf("Decide = %v, want no move: the copy costs more than it saves", m)
	}
	if m, ok := Decide(nodes, jobs, "w1", Params{Bandwidth: 1e9}); !ok {
		t.Errorf("Decide with a 1 GB/s link = no move, want one (got %v)", m)
	}
}

func TestNoPingPong(t *testing.T) {
	// Whatever move Decide makes, the reverse move right after must not be
	// chosen by the target, even with the residence time waived.
	for _, loads := range [][2]float64{{2, 0}, {3, 1}, {4, 1}, {5, 2}, {7, 3}} {
		nodes := []Node{node("a", loads[0]), node("b", loads[1])}
		m, ok := Decide(nodes, busy("a", int(loads[0])), "a", Params{})
		if !ok {
			continue
		}
		after := []Node{node("a", loads[0]-1), node("b", loads[1]+1)}
		back := Job{ID: m.Job, Node: "b", CPU: 1, RSS: 64 << 20, Age: time.Hour, Resident: time.Hour, Moves: 1}
		if r, ok := Decide(after, []Job{back}, "b", Params{}); ok {
			t.Errorf("loads %v: moved %v then back %v", loads, m, r)
		}
	}
}

func TestPlace(t *testing.T) {
	full := node("w1", 0)
	full.MemFree = 0
	tests := []struct {
		name    string
		nodes   []Node
		home    string
		want    string
		wantErr bool
	}{
		{"idle home keeps it", []Node{node("w1", 0), node("w2", 0)}, "w1", "w1", false},
		{"busy home sends it away", []Node{node("w1", 3), node("w2", 0), node("w3", 1)}, "w1", "w2", false},
		{"close call stays home", []Node{node("w1", 1), node("w2", 1)}, "w1", "w1", false},
		{"home without memory", []Node{full, node("w2", 4)}, "w1", "w2", false},
		{"nobody accepts", []Node{full}, "w1", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := Place(tt.nodes, tt.home, 64<<20, Params{})
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("Place(home %s) = %q, %v; want %q (error %v)", tt.home, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// mayMove says no only when Decide could move nothing whatever the jobs,
// so that a node of a busy cluster need not read its jobs' CPU use.
func TestMayMove(t *testing.T) {
	short := node("w1", 1)
	short.MemFree = short.MemTotal / 20
	draining := node("w1", 1)
	draining.Draining = true
	blocked := node("w2", 0)
	blocked.Accepts = false
	for _, tc := range []struct {
		name  string
		nodes []Node
		want  bool
	}{
		{"every node has one job on its one core", []Node{node("w1", 1), node("w2", 1), node("w3", 1)}, false},
		{"another node has a free core", []Node{node("w1", 1), node("w2", 0), node("w3", 1)}, true},
		{"a node with a free core that takes no jobs", []Node{node("w1", 1), blocked, node("w3", 1)}, false},
		{"three here, one there: a job runs faster there", []Node{node("w1", 3), node("w2", 1)}, true},
		{"two here, two there", []Node{node("w1", 2), node("w2", 2)}, false},
		{"draining", []Node{draining, node("w2", 1)}, true},
		{"short of memory", []Node{short, node("w2", 1)}, true},
		{"not in the cluster", []Node{node("w2", 0)}, false},
	} {
		if got := mayMove(tc.nodes, "w1", Params{}); got != tc.want {
			t.Errorf("%s: mayMove = %v, want %v", tc.name, got, tc.want)
		}
		if src := find(tc.nodes, "w1"); !tc.want && src != nil {
			// Decide agrees: w1's jobs, as many as it has runnable,
			// stay where they are.
			if mv, ok := Decide(tc.nodes, busy("w1", int(src.Runnable)), "w1", Params{}); ok {
				t.Errorf("%s: mayMove says no, but Decide moves: %v", tc.name, mv)
			}
		}
	}
}

func TestWorkLeft(t *testing.T) {
	s := time.Second
	for _, tt := range []struct {
		name string
		used time.Duration
		like []time.Duration
		want time.Duration
	}{
		{"no like: not known", 5 * s, nil, 0},
		{"the median less what it used", 20 * s, []time.Duration{30 * s, 100 * s, 32 * s}, 12 * s},
		{"at least a second", 31 * s, []time.Duration{30 * s}, s},
		{"half as much again as the median: not known", 46 * s, []time.Duration{30 * s}, 0},
	} {
		if got := WorkLeft(tt.used, tt.like); got != tt.want {
			t.Errorf("%s: WorkLeft(%v, %v) = %v, want %v", tt.name, tt.used, tt.like, got, tt.want)
		}
	}
}

// Of jobs that would save as much by moving (young jobs all count the
// least remaining life), the youngest goes: it takes the least of the
// busy node's work along. Of old jobs, the oldest goes: it is expected
// to run the longest.
func TestDecideYoungestOfEquals(t *testing.T) {
	nodes := []Node{node("w1", 3), node("w2", 0)}
	jobs := busy("w1", 3)
	for i, age := range []time.Duration{3 * time.Second, 1500 * time.Millisecond, 2 * time.Second} {
		jobs[i].Age, jobs[i].Resident, jobs[i].RSS = age, age, 2<<20
	}
	if mv, ok := Decide(nodes, jobs, "w1", Params{}); !ok || mv.Job != "w1-b" {
		t.Errorf("young jobs: Decide = %v, %v; want w1-b (1.5 s old) to go", mv, ok)
	}
	for i, age := range []time.Duration{40 * time.Second, 90 * time.Second, 60 * time.Second} {
		jobs[i].Age, jobs[i].Resident = age, age
	}
	if mv, ok := Decide(nodes, jobs, "w1", Params{}); !ok || mv.Job != "w1-b" {
		t.Errorf("old jobs: Decide = %v, %v; want w1-b (90 s old) to go", mv, ok)
	}
	jobs[1].Age, jobs[1].Resident = 50*time.Second, 50*time.Second
	if mv, ok := Decide(nodes, jobs, "w1", Params{}); !ok || mv.Job != "w1-c" {
		t.Errorf("old jobs: Decide = %v, %v; want w1-c (60 s old) to go", mv, ok)
	}
}
