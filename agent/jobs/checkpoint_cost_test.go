package jobs

import (
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/migrate"
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

func TestNextInterval(t *testing.T) {
	ms, s := time.Millisecond, time.Second
	const mib = 1 << 20
	c := migrate.CostModel{Base: 500 * ms, PerMiB: 50 * ms}
	for _, tt := range []struct {
		name     string
		every    time.Duration
		full     bool
		mem      int64
		d        dirtyRate
		want     time.Duration
		wantCost time.Duration
	}{
		{"full dump of 64 MiB: twenty times its cost", 30 * s, true, 64 * mib, dirtyRate{}, 74 * s, 3700 * ms},
		{"full dump of 1 MiB: the interval", 30 * s, true, mib, dirtyRate{}, 30 * s, 550 * ms},
		{"no full dump yet: as a full one", 30 * s, false, 64 * mib, dirtyRate{rate: 1000}, 74 * s, 3700 * ms},
		{"increments of a job that dirties little: the interval", 30 * s, false, 64 * mib, dirtyRate{rate: 10 << 10, full: 64 * mib}, 30 * s, 515 * ms},
		{"half a MiB a second: cost and time grow together", 10 * s, false, 64 * mib, dirtyRate{rate: mib / 2, full: 64 * mib}, 20 * s, s},
		{"dirtied faster than the cost allows: as a full dump", 30 * s, false, 64 * mib, dirtyRate{rate: mib, full: 64 * mib}, 74 * s, 3700 * ms},
		{"the whole memory dirtied before the cost is paid off: as a full dump", 10 * s, false, 16 * mib, dirtyRate{rate: 0.8 * mib, full: 16 * mib}, 26 * s, 1300 * ms},
		{"memory not read: the full dump's size bounds an increment", 10 * s, false, 0, dirtyRate{rate: 0.8 * mib, full: 16 * mib}, 26 * s, 1300 * ms},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, cost := nextInterval(tt.every, c, tt.full, tt.mem, tt.d)
			if d := got - tt.want; d < -ms || d > ms {
				t.Errorf("interval %v, want %v", got, tt.want)
			}
			if d := cost - tt.wantCost; d < -ms || d > ms {
				t.Errorf("expected cost %v, want %v", cost, tt.wantCost)
			}
		})
	}
}

func TestDirtyRate(t *testing.T) {
	const mib = 1 << 20
	t0 := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	var d dirtyRate
	d.start(t0)
	d.dumped(t0.Add(50*time.Second), true, 64*mib, true)
	if d.rate != 64*mib/50.0 || d.full != 64*mib {
		t.Errorf("after the first full dump: %+v, want its size over the time the job ran", d)
	}
	d.dumped(t0.Add(80*time.Second), false, 30*mib, true)
	if d.rate != mib {
		t.Errorf("after an increment of 30 MiB in 30 s: rate %v, want 1 MiB/s", d.rate)
	}
	d.dumped(t0.Add(90*time.Second), false, 60*mib, false)
	if d.rate != mib || !d.since.Equal(t0.Add(80*time.Second)) {
		t.Errorf("a dump not published changed the rate: %+v", d)
	}
	d.dumped(t0.Add(110*time.Second), true, 48*mib, true)
	if d.rate != mib || d.full != 48*mib {
		t.Errorf("a later full dump: %+v, want the increments' rate kept and its size", d)
	}
}
