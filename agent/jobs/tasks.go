package jobs

import (
	"context"
	"maps"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
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
	if m.KillOrphans { // this node's agent, not a test's
		m.tasks.Go(func() { m.claimOwn(ctx) })
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	gone := time.NewTicker(time.Second)
	defer gone.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-gone.C:
			m.findGone()
		case now := <-t.C:
			m.forgetExited(now)
			m.findLost(now)
		}
	}
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

// How long and how many exited jobs a home keeps, for drift ps and
// drift attach (which replays the output and the exit status).
const (
	keepExitedFor = time.Hour
	keepExitedMax = 500
)

// forgetExited drops the records of jobs that exited more than
// keepExitedFor ago, and the oldest beyond keepExitedMax: a node that
// runs jobs for months does not hold them all.
func (m *Manager) forgetExited(now time.Time) {
	type done struct {
		id string
		at time.Time
	}
	homes := m.homeJobs()
	var exited []done
	for id, h := range homes {
		if at := h.exitedAt(); !at.IsZero() {
			exited = append(exited, done{id, at})
		}
	}
	slices.SortFunc(exited, func(a, b done) int { return a.at.Compare(b.at) })
	var drop []string
	for i, d := range exited {
		if now.Sub(d.at) > keepExitedFor || len(exited)-i > keepExitedMax {
			drop = append(drop, d.id)
		}
	}
	if len(drop) == 0 {
		return
	}
	m.mu.Lock()
	for _, id := range drop {
		delete(m.homes, id)
	}
	m.mu.Unlock()
	for _, id := range drop {
		m.forgetDir(id)
	}
	m.log().Info("forgot exited jobs", "count", len(drop))
}

// lostAfter is how long a home waits, after a stint ended as moved, for
// the next one to start: longer than a target holds a restored copy.
const lostAfter = migrate.HoldTimeout + time.Minute

// findLost ends the jobs homed here that were lost in a move.
func (m *Manager) findLost(now time.Time) {
	homes := m.homeJobs()
	for id, h := range homes {
		if h.lostInMove(now, lostAfter) {
			m.log().Error("job lost in a move: no node runs it", "job", id)
		}
	}
}

// findGone ends the jobs homed here that ran on a node the cluster has
// declared dead: they are lost, and whoever waits on them hears so within
// a second, not when TCP gives up on the node minutes later.
func (m *Manager) findGone() {
	if m.Peers == nil {
		return
	}
	alive := map[string]bool{}
	for _, n := range m.Peers.Nodes() {
		alive[n] = true
	}
	m.abandonReturned(alive)
	m.adoptOrphans(alive)
	m.claimOrphans(m.dead.newlyDead(alive))
	homes := m.homeJobs()
	for id, h := range homes {
		info := h.snapshot()
		if info.State == api.JobExited || info.Node == "" || info.Node == m.Self || alive[info.Node] {
			continue
		}
		if m.recover(id, h, info.Node, false) {
			continue
		}
		if h.nodeGone(info.Node) {
			m.log().Error("job lost: the node it ran on died", "job", id, "node", info.Node)
		}
	}
}

// homeJobs is a copy of the records of the jobs homed here, to go
// through without holding m.mu.
func (m *Manager) homeJobs() map[string]*homeJob {
	m.mu.Lock()
	defer m.mu.Unlock()
	return maps.Clone(m.homes)
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
