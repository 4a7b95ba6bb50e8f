package bench

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMedian(t *testing.T) {
	s := time.Second
	tests := []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * s}, 3 * s},
		{[]time.Duration{9 * s, 1 * s, 5 * s}, 5 * s},
		{[]time.Duration{4 * s, 1 * s, 2 * s, 8 * s}, 3 * s},
	}
	for _, tt := range tests {
		if got := Median(tt.in); got != tt.want {
			t.Errorf("Median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestParseConverge(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want []Converge
	}{
		{"two sizes", "goos: linux\nBenchmarkConverge/agents=50-2  \t       1\t         2.310 s/converge\t       812.0 B/node/s\nBenchmarkConverge/agents=200-2 1 9.5 s/converge 1024 B/node/s\nPASS\n",
			[]Converge{{50, 2.31, 812, ""}, {200, 9.5, 1024, ""}}},
		{"without GOMAXPROCS suffix", "BenchmarkConverge/agents=7 1 0.5 s/converge 10 B/node/s", []Converge{{7, 0.5, 10, ""}}},
		{"log lines and other benchmarks ignored", "    bench_test.go:49: 50 agents: converged in 2.31s\nBenchmarkOther 1 3 ns/op\n", nil},
		{"malformed size", "BenchmarkConverge/agents=x-2 1 1 s/converge", nil},
		{"a failed size", "BenchmarkConverge/agents=50-2 1 2.6 s/converge 630.7 B/node/s\n--- FAIL: BenchmarkConverge/agents=200\n    bench_test.go:102: 200 agents did not converge in 60s\n--- FAIL: BenchmarkConverge\n",
			[]Converge{{50, 2.6, 630.7, ""}, {200, 0, 0, "bench_test.go:102: 200 agents did not converge in 60s"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseConverge(tt.out)); diff != "" {
				t.Errorf("ParseConverge(%q) mismatch (-want +got):\n%s", tt.out, diff)
			}
		})
	}
}

func TestParsePhases(t *testing.T) {
	console := "[    1.391853] Trying to unpack rootfs image as initramfs...\r\n" +
		"[    3.049588] Freeing initrd memory: 24644K\r\n" +
		"[    3.856502] Run /init as init process\r\n" +
		"[    4.1] u-root banner\r\n" +
		"drift: boot phase=agent uptime=4.20\r\n" +
		"noise drift: boot phase=modules uptime=4.90\r\n" +
		"drift: boot phase=agent uptime=9.99\r\n" + // a restarted agent: the first boot's counts
		"drift: ready node=drift-000001 addr=10.0.0.1 role=head version=v\r\n" +
		"drift: boot phase=ready uptime=6.50\r\n"
	got := parsePhases(console)
	want := map[string]time.Duration{"unpacked": 3049588 * time.Microsecond, "userspace": 3856502 * time.Microsecond, "agent": 4200 * time.Millisecond, "modules": 4900 * time.Millisecond, "ready": 6500 * time.Millisecond}
	if len(got) != len(want) {
		t.Fatalf("parsePhases = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parsePhases()[%q] = %v, want %v", k, got[k], v)
		}
	}
	if s := Spread([]time.Duration{3 * time.Second, time.Second, 2 * time.Second}); s != 2*time.Second {
		t.Errorf("Spread = %v, want 2s", s)
	}
}

func TestBracketed(t *testing.T) {
	s := func(d float64) []time.Duration {
		x := time.Duration(d * float64(time.Second))
		return []time.Duration{x, x, x}
	}
	busy := [][]time.Duration{s(10), s(12), s(11)}
	runs := []time.Duration{55 * time.Second, 66 * time.Second, 70 * time.Second}
	got := bracketed(15, busy, runs)
	// Run 1 between samples of 10 and 12 s: 11 s a task, 15 tasks on 3
	// nodes, an ideal of 55 s; run 2 between 12 and 11; run 3 has no
	// sample after it.
	if len(got) != 2 || math.Abs(got[0]-1) > 1e-9 || math.Abs(got[1]-66/57.5) > 1e-9 {
		t.Fatalf("bracketed = %v, want [1 %.4f]", got, 66/57.5)
	}
}

// bench-balance samples capacity once more after its last run, and sets
// each run against the samples on either side of it.
func TestBalancePrintBracketed(t *testing.T) {
	s := func(d float64) []time.Duration {
		x := time.Duration(d * float64(time.Second))
		return []time.Duration{x, x, x}
	}
	r := &BalanceResult{Jobs: 9, Share: 0.6, Busy: [][]time.Duration{s(30), s(32), s(30), s(34)},
		WithBal: []time.Duration{93 * time.Second, 99 * time.Second, 96 * time.Second}, Migrations: []int{6, 6, 6}, MoveTimes: make([][]time.Duration, 3),
		Placed: 90 * time.Second, Ideal: 90 * time.Second}
	var b strings.Builder
	r.Print(&b)
	for _, want := range []string{"(head, worker 1, worker 2; before run 3)", "(head, worker 1, worker 2; after run 3)",
		"each run against the capacity sampled just before and after it: 1.00x 1.06x 1.00x (median 1.00x)",
		"placed evenly at start     90.0 s  1.00x ideal  (3 per node from the start, balancing off: what no balancer beats from one node, 1.00x the capacity sampled just after it)", "each run against placed evenly at start: 1.03x 1.10x 1.07x (median 1.07x)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("bench-balance printed\n%s\nwant a line with %q", b.String(), want)
		}
	}
}

// The sweep that bench-sweep simulates, at a fifth of its size: the
// balancer must not make the pool slower than the queue alone, nor move
// tasks back and forth. When the simulator counted a task started ahead
// as load while it started, moves allowed 1 s after a task started made
// it 1.57x of ideal with 17,000 moves (up to 6 per task), against 2.08x
// for the queue alone; it now takes 1.09x with 77 moves.
func TestSweepSimBalancerHelps(t *testing.T) {
	r := simulateSweep(200, 20000, 1)
	plain, bal := r.Plain[0], r.Balanced[0]
	t.Logf("queue alone: %v\nqueue and balancer: %v", plain, bal)
	if bal.Makespan > plain.Makespan {
		t.Errorf("with the balancer the sweep took %s, longer than the queue alone (%s)", bal.Makespan, plain.Makespan)
	}
	if bal.Migrations > 20000/5 || bal.MaxMoves > 2 {
		t.Errorf("the balancer made %d moves, up to %d of one task; want at most one per 5 tasks and 2 per task", bal.Migrations, bal.MaxMoves)
	}
}
