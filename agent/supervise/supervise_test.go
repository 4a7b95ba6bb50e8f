package supervise

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

func TestRestartsFailingService(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var runs, notNeeded atomic.Int32
	s := &Supervisor{MinBackoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond}
	s.Run(ctx,
		Service{Name: "flaky", Run: func(ctx context.Context) error {
			switch runs.Add(1) {
			case 1:
				return errors.New("boom")
			case 2:
				panic("bug")
			case 3:
				return nil
			}
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}},
		Service{Name: "absent", Run: func(ctx context.Context) error {
			notNeeded.Add(1)
			return Done(errors.New("no such port"))
		}},
	)
	if got := runs.Load(); got != 4 {
		t.Errorf("flaky service ran %d times, want 4 (error, panic, nil return, then until cancelled)", got)
	}
	if got := notNeeded.Load(); got != 1 {
		t.Errorf("Done service ran %d times, want 1", got)
	}
}
