package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/jobs"
)

// balancePeriod is how often a node looks for jobs to send elsewhere,
// besides right after each of its moves ends and each mode change.
const balancePeriod = 2 * time.Second

// maxOutgoing is how many moves a node makes at once, each to a
// different target. The node is busy by definition, so its dumps share
// one starved CPU and every frozen job waits longer: on the bench (9 jobs
// on one of 3 VMs) one move at a time, the next as soon as one ends, did
// better than two at once.
const maxOutgoing = 1

// A job whose move failed is left alone for retryFirst, twice as long
// after each further failure, at most retryMax: a failure may pass (a
// busy target, a CRIU hiccup) or last (what the job holds).
const (
	retryFirst = 10 * time.Second
	retryMax   = 5 * time.Minute
)

// admission is a target's load as it reported it on taking a job, which
// counts until gossip has surely caught up.
type admission struct {
	load int
	at   time.Time
}

// admissionTTL is how long a target's own count outranks gossip that
// shows less (gossip carries a load change within a second or so).
const admissionTTL = 3 * time.Second

type failure struct {
	n     int       // failed moves in a row
	retry time.Time // not before
}

// balancer runs the balancing policy on this node's own jobs, from the
// load that membership gossips, and migrates what it decides; it also
// holds the node's mode (blocked, draining) and whether balancing is on.
type balancer struct {
	a        *agent
	cl       *cluster
	off      atomic.Bool // drift balance off
	blocked  atomic.Bool // drift block: no new jobs or migrations here
	draining atomic.Bool // drift drain: every job leaves

	wake chan struct{} // look again now

	mu       sync.Mutex
	failed   map[string]failure   // jobs whose last moves failed, left alone a while
	admitted map[string]admission // the load each target reported when it last took a job from here
	inflight map[string]string    // moves under way: job → target
}

// mode is what the node gossips about itself.
func (b *balancer) mode() (blocked, draining bool) {
	return b.blocked.Load() || b.draining.Load(), b.draining.Load()
}

// accepting tells the job manager whether to take jobs.
func (b *balancer) accepting() (bool, string) {
	switch {
	case b.draining.Load():
		return false, b.a.node.Name + " is draining: it takes no jobs (drift unblock " + b.a.node.Name + ")"
	case b.blocked.Load():
		return false, b.a.node.Name + " is blocked: it takes no jobs (drift unblock " + b.a.node.Name + ")"
	}
	return true, ""
}

// wakeUp makes Run look again now; it does not block.
func (b *balancer) wakeUp() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Run decides and starts moves each period, and again whenever a move
// ends, until ctx ends; moves under way finish (or fail, leaving their job
// here) before it returns.
func (b *balancer) Run(ctx context.Context) error {
	t := time.NewTicker(balancePeriod)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-b.wake:
		}
		for {
			mv, expect, ok := b.decide()
			if !ok {
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.move(ctx, mv, expect)
			}()
		}
	}
}

// decide returns the next move to start, if any, and the number of jobs
// the target is counted to have: moves under way count on their targets
// and no longer here, and a target with a move under way gets no other.
func (b *balancer) decide() (balance.Move, int, bool) {
	if b.off.Load() && !b.draining.Load() {
		return balance.Move{}, 0, false
	}
	self := b.a.node.Name
	nodes := b.cl.view()
	now := time.Now()
	residents := b.a.jobs.Residents()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.inflight) >= maxOutgoing {
		return balance.Move{}, 0, false
	}
	busy := map[string]bool{}
	for _, to := range b.inflight {
		busy[to] = true
	}
	for id := range b.failed { // forget jobs that ended or left
		if _, moving := b.inflight[id]; !moving && !slices.ContainsFunc(residents, func(r jobs.Resident) bool { return r.ID == id }) {
			delete(b.failed, id)
		}
	}
	// The jobs here that are not already on their way elsewhere.
	here := slices.DeleteFunc(slices.Clone(residents), func(r jobs.Resident) bool {
		_, moving := b.inflight[r.ID]
		return moving
	})
	var js []balance.Job
	for _, r := range here {
		if f, ok := b.failed[r.ID]; ok && now.Before(f.retry) {
			continue
		}
		js = append(js, balance.Job{ID: r.ID, Node: self, CPU: r.CPU, RSS: r.RSS, Age: now.Sub(r.Since),
			Resident: now.Sub(r.Since), Moves: r.Moves, Stay: r.Stay})
	}
	for i := range nodes {
		n := &nodes[i]
		if n.Name == self { // our own mode and jobs, fresher than gossip
			blocked, draining := b.mode()
			n.Accepts = n.Accepts && !blocked
			n.Draining = draining
			n.Runnable = float64(len(here))
			continue
		}
		if a, ok := b.admitted[n.Name]; ok && now.Sub(a.at) < admissionTTL {
			n.Runnable = max(n.Runnable, float64(a.load))
		}
		if busy[n.Name] {
			n.Runnable++
			n.Accepts = false
		}
	}
	mv, ok := balance.Decide(nodes, js, self, balance.Params{})
	if !ok {
		return balance.Move{}, 0, false
	}
	var expect int
	for _, n := range nodes {
		if n.Name == mv.To {
			expect = int(n.Runnable)
		}
	}
	if b.inflight == nil {
		b.inflight = map[string]string{}
	}
	b.inflight[mv.Job] = mv.To
	return mv, expect, true
}

// move migrates one job as decided, then has Run look again.
func (b *balancer) move(ctx context.Context, mv balance.Move, expect int) {
	defer b.wakeUp()
	b.a.log.Info("balance: moving a job", "job", mv.Job, "to", mv.To, "why", mv.Reason)
	res, err := b.a.jobs.Migrate(ctx, mv.Job, api.MigrateRequest{To: mv.To, Reason: mv.Reason, Expect: &expect})
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.inflight, mv.Job)
	switch {
	case errors.Is(err, jobs.ErrTargetRefused):
		// The target is busier than gossip said: it gossips its load as
		// it changes, so the next look will know.
		b.a.log.Info("balance: target refused; the job stays for now", "job", mv.Job, "to", mv.To, "err", err)
	case err != nil:
		b.a.log.Warn("balance: move failed; the job stays", "job", mv.Job, "to", mv.To, "err", err)
		if b.failed == nil {
			b.failed = map[string]failure{}
		}
		f := b.failed[mv.Job]
		f.n++
		f.retry = time.Now().Add(min(retryFirst<<(f.n-1), retryMax))
		b.failed[mv.Job] = f
	default:
		delete(b.failed, mv.Job)
		if b.admitted == nil {
			b.admitted = map[string]admission{}
		}
		b.admitted[mv.To] = admission{load: res.TargetLoad, at: time.Now()}
		b.a.log.Info("balance: moved", "job", mv.Job, "to", mv.To, "freeze", res.Freeze, "total", res.Total)
	}
}

func (b *balancer) routes(routes map[string]http.Handler) {
	routes["POST /v1/nodes/{name}/mode"] = http.HandlerFunc(b.handleMode)
	routes["POST /v1/balance"] = http.HandlerFunc(b.handleBalance)
	routes["GET /v1/balance"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, api.BalanceState{On: !b.off.Load()})
	})
}

// handleMode blocks, unblocks or drains a node: this one, or forwarded.
func (b *balancer) handleMode(w http.ResponseWriter, r *http.Request) {
	var req api.ModeRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "mode: want {\"blocked\": BOOL, \"draining\": BOOL}", http.StatusBadRequest)
		return
	}
	name := r.PathValue("name")
	if name != b.a.node.Name {
		c, err := (&peers{a: b.a, cl: b.cl}).Client(name)
		if err == nil {
			err = c.Call(r.Context(), http.MethodPost, "/v1/nodes/"+name+"/mode", req, nil)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("set the mode of %s: %v", name, err), http.StatusBadGateway)
			return
		}
		api.WriteJSON(w, req)
		return
	}
	if req.Blocked != nil {
		b.blocked.Store(*req.Blocked)
	}
	if req.Draining != nil {
		b.draining.Store(*req.Draining)
	}
	blocked, draining := b.mode()
	b.cl.refresh()
	b.wakeUp()
	b.a.con.Event("mode blocked=%v draining=%v", blocked, draining)
	api.WriteJSON(w, req)
}

// handleBalance turns balancing on or off on every node.
func (b *balancer) handleBalance(w http.ResponseWriter, r *http.Request) {
	var req api.BalanceState
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "balance: want {\"on\": BOOL}", http.StatusBadRequest)
		return
	}
	b.off.Store(!req.On)
	if req.Local {
		api.WriteJSON(w, req)
		return
	}
	p := &peers{a: b.a, cl: b.cl}
	var failed []string
	for _, n := range p.Nodes() {
		if n == b.a.node.Name {
			continue
		}
		c, err := p.Client(n)
		if err == nil {
			err = c.Call(r.Context(), http.MethodPost, "/v1/balance", api.BalanceState{On: req.On, Local: true}, nil)
		}
		if err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", n, err))
		}
	}
	if len(failed) > 0 {
		http.Error(w, fmt.Sprintf("balancing is %s here, but these nodes did not hear it: %v", onOff(req.On), failed), http.StatusBadGateway)
		return
	}
	api.WriteJSON(w, req)
}

func onOff(on bool) string {
	if on {
		return "on"
	}
	return "off"
}
