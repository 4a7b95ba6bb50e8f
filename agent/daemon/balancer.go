package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/jobs"
)

// balancePeriod is how often a node looks for a job to send elsewhere.
const balancePeriod = 5 * time.Second

// balancer runs the balancing policy on this node's own jobs, from the
// load that membership gossips, and migrates what it decides; it also
// holds the node's mode (blocked, draining) and whether balancing is on.
type balancer struct {
	a        *agent
	cl       *cluster
	off      atomic.Bool // drift balance off
	blocked  atomic.Bool // drift block: no new jobs or migrations here
	draining atomic.Bool // drift drain: every job leaves

	mu     sync.Mutex
	failed map[string]time.Time // jobs whose last move failed, left alone a while
	sent   pending              // moves made to each node, until gossip shows them
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

// Run decides and moves, one job per period (back to back while draining).
func (b *balancer) Run(ctx context.Context) error {
	t := time.NewTicker(balancePeriod)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		// A move changes the picture here at once: look again straight
		// away (every job in turn while draining).
		for n := 0; b.step(ctx) && ctx.Err() == nil && (n < 3 || b.draining.Load()); n++ {
		}
	}
}

// step makes at most one move and reports whether it made one.
func (b *balancer) step(ctx context.Context) bool {
	if b.off.Load() && !b.draining.Load() {
		return false
	}
	self := b.a.node.Name
	nodes := b.cl.view()
	for i := range nodes {
		if nodes[i].Name == self { // our own mode, fresher than gossip
			blocked, draining := b.mode()
			nodes[i].Accepts = nodes[i].Accepts && !blocked
			nodes[i].Draining = draining
		}
	}
	now := time.Now()
	var js []balance.Job
	residents := b.a.jobs.Residents()
	b.mu.Lock()
	for i := range nodes {
		if nodes[i].Name == self {
			nodes[i].Runnable = float64(len(residents))
		}
		nodes[i].Runnable += float64(b.sent.count(nodes[i].Name, now))
	}
	for _, r := range residents {
		if t, ok := b.failed[r.ID]; ok && now.Sub(t) < time.Minute {
			continue
		}
		js = append(js, balance.Job{ID: r.ID, Node: self, CPU: r.CPU, RSS: r.RSS, Age: now.Sub(r.Since),
			Resident: now.Sub(r.Since), Moves: r.Moves, Stay: r.Stay})
	}
	b.mu.Unlock()
	mv, ok := balance.Decide(nodes, js, self, balance.Params{})
	if !ok {
		return false
	}
	b.a.log.Info("balance: moving a job", "job", mv.Job, "to", mv.To, "why", mv.Reason)
	var expect int
	for _, n := range nodes {
		if n.Name == mv.To {
			expect = int(n.Runnable)
		}
	}
	res, err := b.a.jobs.Migrate(ctx, mv.Job, jobs.MigrateRequest{To: mv.To, Reason: mv.Reason, Expect: &expect})
	if errors.Is(err, jobs.ErrTargetRefused) {
		// The target is busier than gossip said: the next look will know.
		b.a.log.Info("balance: target refused; the job stays for now", "job", mv.Job, "to", mv.To, "err", err)
		return false
	}
	if err != nil {
		b.a.log.Warn("balance: move failed; the job stays", "job", mv.Job, "to", mv.To, "err", err)
		b.mu.Lock()
		if b.failed == nil {
			b.failed = map[string]time.Time{}
		}
		b.failed[mv.Job] = now
		b.mu.Unlock()
		return false
	}
	b.sent.add(mv.To, now)
	b.a.log.Info("balance: moved", "job", mv.Job, "to", mv.To, "freeze", res.Freeze, "total", res.Total)
	return true
}

// ModeRequest changes a node's mode; nil fields stay as they are.
type ModeRequest struct {
	Blocked  *bool `json:"blocked,omitempty"`
	Draining *bool `json:"draining,omitempty"`
}

// BalanceState is whether automatic balancing is on, cluster-wide.
type BalanceState struct {
	On    bool `json:"on"`
	Local bool `json:"local,omitempty"` // apply on this node only (the broadcast's own messages)
}

func (b *balancer) routes(routes map[string]http.Handler) {
	routes["POST /v1/nodes/{name}/mode"] = http.HandlerFunc(b.handleMode)
	routes["POST /v1/balance"] = http.HandlerFunc(b.handleBalance)
	routes["GET /v1/balance"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, BalanceState{On: !b.off.Load()})
	})
}

// handleMode blocks, unblocks or drains a node: this one, or forwarded.
func (b *balancer) handleMode(w http.ResponseWriter, r *http.Request) {
	var req ModeRequest
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
	b.a.con.Event("mode blocked=%v draining=%v", blocked, draining)
	api.WriteJSON(w, req)
}

// handleBalance turns balancing on or off on every node.
func (b *balancer) handleBalance(w http.ResponseWriter, r *http.Request) {
	var req BalanceState
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
			err = c.Call(r.Context(), http.MethodPost, "/v1/balance", BalanceState{On: req.On, Local: true}, nil)
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
