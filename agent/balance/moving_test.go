package balance

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestExecutorMoving: a job counts as moving from when its move starts
// until the move has ended, whatever its job does meanwhile.
func TestExecutorMoving(t *testing.T) {
	w := newWorld([]Node{node("w1", 0), node("w2", 0)}, "a", "b", "c", "d")
	bw := blockingWorld{w, make(chan Move), make(chan struct{})}
	e := w.executor()
	e.Migrator = bw
	e.Period = time.Hour
	if got := e.Moving(); len(got) != 0 {
		t.Errorf("Moving() before any move = %v, want none", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	e.Wake()
	select {
	case mv := <-bw.started:
		if got := e.Moving(); !slices.Equal(got, []string{mv.Job}) {
			t.Errorf("Moving() while %s moves = %v, want [%s]", mv.Job, got, mv.Job)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no move started")
	}
	cancel()
	close(bw.release)
	<-done
	if got := e.Moving(); len(got) != 0 {
		t.Errorf("Moving() after Run returned = %v, want none", got)
	}
}
