package bench

import (
	"strings"
	"testing"
	"time"
)

func TestParseProcStat(t *testing.T) {
	// A guest's /proc/stat: user nice system idle iowait irq softirq steal guest guest_nice.
	before := "cpu  1000 200 300 4000 50 7 13 0 0 0\ncpu0 1000 200 300 4000 50 7 13 0 0 0\nintr 1 2 3\n"
	after := "cpu  1150 9200 420 4500 60 9 21 0 0 0\ncpu0 1150 9200 420 4500 60 9 21 0 0 0\n"
	b, err := parseProcStat(before)
	if err != nil {
		t.Fatal(err)
	}
	a, err := parseProcStat(after)
	if err != nil {
		t.Fatal(err)
	}
	got := cpuSince([]nodeCPU{b}, []nodeCPU{a})
	want := nodeCPU{Jobs: 90 * time.Second, Other: 2800 * time.Millisecond, Idle: 5100 * time.Millisecond}
	if len(got) != 1 || got[0] != want {
		t.Errorf("cpuSince = %+v, want %+v", got, want)
	}
	if _, err := parseProcStat("intr 1 2 3\n"); err == nil {
		t.Error("parseProcStat without a cpu line: no error")
	}
	if _, err := parseProcStat("cpu  1 2 x 4 5 6 7\n"); err == nil {
		t.Error("parseProcStat of a bad number: no error")
	}
	if cpuSince(nil, []nodeCPU{a}) != nil {
		t.Error("cpuSince without a reading before: want nil")
	}
	r := &BalanceResult{Jobs: 9, Ideal: 90 * time.Second, WithBal: []time.Duration{95 * time.Second}, Migrations: []int{6}, MoveTimes: make([][]time.Duration, 1),
		PlacedCPU: []nodeCPU{want, want, want}, BalCPU: [][]nodeCPU{{want, want, want}}}
	var sb strings.Builder
	r.Print(&sb)
	for _, line := range []string{"    placed evenly at start   90.0 /  2.8 /  5.1,   90.0 /  2.8 /  5.1,   90.0 /  2.8 /  5.1",
		"    with balancing, run 1    90.0 /  2.8 /  5.1,"} {
		if !strings.Contains(sb.String(), line) {
			t.Errorf("bench-balance printed\n%s\nwant a line with %q", sb.String(), line)
		}
	}
}
