package boot

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseUptime(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"12.34 5.67\n", 12340 * time.Millisecond, false},
		{"0.50 0.10", 500 * time.Millisecond, false},
		{"", 0, true},
		{"abc 1", 0, true},
		{"-1 0", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseUptime([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseUptime(%q) = %v, %v, want %v (error: %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestPhaseLog(t *testing.T) {
	var (
		mu    sync.Mutex
		lines []string
	)
	up := 4200 * time.Millisecond
	p := &PhaseLog{
		Event: func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			lines = append(lines, "drift: "+fmt.Sprintf(format, args...))
		},
		Uptime: func() (time.Duration, error) { return up, nil },
	}
	p.Mark(PhaseAgent)
	up = 5 * time.Second
	p.Mark(PhaseModules)
	p.Mark(PhaseAgent) // once only
	p.Uptime = func() (time.Duration, error) { return 0, errors.New("no /proc") }
	p.Mark(PhaseReady)
	want := []string{
		"drift: boot phase=agent uptime=4.20",
		"drift: boot phase=modules uptime=5.00",
		"drift: boot phase=ready uptime=unknown (no /proc)",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("lines mismatch (-want +got):\n%s", diff)
	}
	var nilLog *PhaseLog
	nilLog.Mark(PhaseReady) // a nil log marks nothing and does not panic

	for i, l := range lines[:2] {
		name, at, ok := ParsePhase(l)
		wantName := []string{PhaseAgent, PhaseModules}[i]
		wantAt := []time.Duration{4200 * time.Millisecond, 5 * time.Second}[i]
		if !ok || name != wantName || at != wantAt {
			t.Errorf("ParsePhase(%q) = %q, %v, %v, want %q, %v, true", l, name, at, ok, wantName, wantAt)
		}
	}
	if _, _, ok := ParsePhase(lines[2]); ok {
		t.Errorf("ParsePhase(%q) ok, want not ok", lines[2])
	}
}
