package jobs

import (
	"testing"
	"time"
)

func TestJobLoss(t *testing.T) {
	s := time.Second
	for _, tt := range []struct {
		name                  string
		cpuBefore, wallBefore float64
		cpu                   float64
		window, freeze        time.Duration
		want                  time.Duration
	}{
		{"CPU-bound, copy took a fifth", 30, 30, 8, 10 * s, 500 * time.Millisecond, 2 * s},
		{"CPU-bound, copy took nothing", 30, 30, 9.5, 10 * s, 500 * time.Millisecond, 500 * time.Millisecond},
		{"half a CPU, lost a tenth of it", 15, 30, 4.5, 10 * s, 0, s},
		{"waits for I/O: the freeze only", 0.3, 30, 0, 10 * s, 300 * time.Millisecond, 300 * time.Millisecond},
		{"no rate measured: the freeze only", 0, 0, 5, 10 * s, 200 * time.Millisecond, 200 * time.Millisecond},
		{"ran faster than before: the freeze", 20, 30, 10, 10 * s, 400 * time.Millisecond, 400 * time.Millisecond},
		{"never more than the window", 30, 30, 0, 10 * s, s, 10 * s},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := jobLoss(tt.cpuBefore, tt.wallBefore, tt.cpu, tt.window, tt.freeze); got != tt.want {
				t.Errorf("jobLoss(%v, %v, %v, %v, %v) = %v, want %v", tt.cpuBefore, tt.wallBefore, tt.cpu, tt.window, tt.freeze, got, tt.want)
			}
		})
	}
}

func TestCostInterval(t *testing.T) {
	if got := costInterval(1500 * time.Millisecond); got != 30*time.Second {
		t.Errorf("costInterval(1.5s) = %v, want 30s (5%%)", got)
	}
}
