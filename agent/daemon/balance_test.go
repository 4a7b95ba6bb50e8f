package daemon

import "testing"

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
