package daemon

import (
	"testing"
	"time"
)

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
	p := pending{Window: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	if got := p.count("a", t0); got != 0 {
		t.Errorf("count before any event = %d, want 0", got)
	}
	p.add("a", t0)
	p.add("a", t0.Add(5*time.Second))
	p.add("b", t0)
	for _, tt := range []struct {
		node string
		at   time.Duration
		want int
	}{{"a", 6 * time.Second, 2}, {"a", 12 * time.Second, 1}, {"b", 9 * time.Second, 1}, {"b", 10 * time.Second, 0}, {"c", 0, 0}} {
		if got := p.count(tt.node, t0.Add(tt.at)); got != tt.want {
			t.Errorf("count(%s, +%s) = %d, want %d", tt.node, tt.at, got, tt.want)
		}
	}
}
