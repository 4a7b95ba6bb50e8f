package workload

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestCounter(t *testing.T) {
	var b strings.Builder
	if err := Counter(context.Background(), &b, 5, time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "1\n2\n3\n4\n5\n"; got != want {
		t.Errorf("Counter(5) wrote %q, want %q", got, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Reset()
	if err := Counter(ctx, &b, 0, time.Hour); err != context.Canceled || b.String() != "1\n" {
		t.Errorf("Counter(cancelled) = %v after %q, want context.Canceled after one line", err, b.String())
	}
}

func TestBurnAndWork(t *testing.T) {
	if n := Burn(context.Background(), 20*time.Millisecond); n == 0 {
		t.Error("Burn(20ms) made no iterations")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Work(ctx, 1<<40); err != context.Canceled {
		t.Errorf("Work(cancelled) = %v, want context.Canceled", err)
	}
}

func TestTouch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 250*time.Millisecond)
	defer cancel()
	ready := false
	if err := Touch(ctx, 1<<20, 1<<20, func() { ready = true }); err != context.DeadlineExceeded || !ready {
		t.Errorf("Touch = %v (ready %v), want DeadlineExceeded after reporting ready", err, ready)
	}
}

func TestParseSize(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
		ok   bool
	}{{"64M", 64 << 20, true}, {"1G", 1 << 30, true}, {"512K", 512 << 10, true}, {"4096", 4096, true}, {"M", 0, false}, {"1.5G", 0, false}} {
		got, err := ParseSize(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("ParseSize(%q) = %d, %v; want %d (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestHold(t *testing.T) {
	b := Hold(3*4096 + 1)
	if len(b) != 3*4096+1 || b[0] != 1 || b[3*4096] != 1 {
		t.Errorf("Hold: %d bytes, first page byte %d, last page byte %d", len(b), b[0], b[len(b)-1])
	}
	if len(Hold(0)) != 0 {
		t.Error("Hold(0) holds memory")
	}
}
