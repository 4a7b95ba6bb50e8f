package jobs

import (
	"context"
	"net/http"
	"sync"
	"syscall"
)

// tasks counts the goroutines a Manager starts, so that Run can wait for
// them. Unlike a sync.WaitGroup it may be added to while it is waited on
// (a request that arrives as the agent stops).
type tasks struct {
	mu   sync.Mutex
	n    int
	idle *sync.Cond
}

// Go runs f in a goroutine that t counts.
func (t *tasks) Go(f func()) {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
	go func() {
		defer func() {
			t.mu.Lock()
			t.n--
			if t.n == 0 && t.idle != nil {
				t.idle.Broadcast()
			}
			t.mu.Unlock()
		}()
		f()
	}()
}

// wait returns once no goroutine of t runs.
func (t *tasks) wait() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.idle == nil {
		t.idle = sync.NewCond(&t.mu)
	}
	for t.n > 0 {
		t.idle.Wait()
	}
}

// Run owns the goroutines the Manager starts (terminal relays, stint
// streams, input flushes, the watch on each job's end): it returns once
// ctx has ended and they all have. When ctx ends, every terminal and
// stint stream closes, and the jobs running on this node are killed: they
// are the agent's children, and cannot outlive it whole.
func (m *Manager) Run(ctx context.Context) error {
	m.init()
	<-ctx.Done()
	m.stop()
	m.mu.Lock()
	runners := make([]*runner, 0, len(m.runners))
	for _, r := range m.runners {
		runners = append(runners, r)
	}
	m.mu.Unlock()
	for _, r := range runners {
		r.signal(syscall.SIGKILL)
	}
	for _, r := range runners {
		<-r.done
	}
	m.tasks.wait()
	return nil
}

// streamContext is the context of a hijacked stream: the server may
// cancel the request's own context once the connection is taken over, so
// a stream lives until either side hangs up or the Manager stops. Call
// the cancel function when the stream ends.
func (m *Manager) streamContext(r *http.Request) (context.Context, context.CancelFunc) {
	m.init()
	ctx, cancel := context.WithCancel(context.WithoutCancel(r.Context()))
	stop := context.AfterFunc(m.base, cancel)
	return ctx, func() { stop(); cancel() }
}
