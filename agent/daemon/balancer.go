package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/arrays"
	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/jobs"
)

// balancer is this node's balance.Executor, wired to membership (the
// cluster it reads) and to the job manager (the jobs it moves and the
// moves it makes), with the API endpoints that set the node's mode and
// turn balancing on or off.
type balancer struct {
	a  *agent
	cl *cluster
	ex *balance.Executor
	// tasks knows how long the tasks of sweeps started here have left
	// (set once the queue runs).
	tasks atomic.Pointer[arrays.Service]
}

func newBalancer(a *agent, cl *cluster) *balancer {
	return &balancer{a: a, cl: cl, ex: &balance.Executor{
		Self:      a.node.Name,
		Cluster:   gossip{cl},
		Residents: residents{a},
		Migrator:  migrator{a},
		Logger:    a.log,
	}}
}

// Run balances this node's jobs until ctx ends.
func (b *balancer) Run(ctx context.Context) error { return b.ex.Run(ctx) }

// loadChanged is told when the jobs here change: the node gossips its
// load at once, and looks at once for a move (a job that just started
// may move as soon as the policy allows; the look says when).
func (b *balancer) loadChanged() {
	b.cl.refresh()
	b.ex.Wake()
}

// mode is what the node gossips about itself.
func (b *balancer) mode() (blocked, draining bool) { return b.ex.Mode() }

// accepting tells the job manager whether to take jobs.
func (b *balancer) accepting() (bool, string) { return b.ex.Accepting() }

// place chooses the node for a job started here without --node.
func (b *balancer) place() (node, reason string, err error) { return b.ex.Place() }

// residents are the job manager's jobs running here, as the balancer
// sees them.
type residents struct{ a *agent }

func (r residents) Residents() []balance.Resident {
	var out []balance.Resident
	tasks, now := r.a.bal.tasks.Load(), time.Now()
	for _, j := range r.a.jobs.Residents() {
		res := balance.Resident{ID: j.ID, CPU: j.CPU, RSS: j.RSS, Since: j.Since, Moves: j.Moves, Stay: j.Stay, Waiting: j.Waiting, Work: j.Work}
		if tasks != nil {
			res.Remaining = tasks.Remaining(j.ID, now)
		}
		out = append(out, res)
	}
	return out
}

// migrator makes the balancer's moves through the job manager.
type migrator struct{ a *agent }

func (m migrator) Migrate(ctx context.Context, mv balance.Move, expect int) (balance.Moved, error) {
	res, err := m.a.jobs.Migrate(ctx, mv.Job, api.MigrateRequest{To: mv.To, Reason: mv.Reason, Expect: &expect})
	if err != nil {
		if kind, ok := refusal(err); ok {
			return balance.Moved{}, &balance.RefusedError{Kind: kind, Err: err}
		}
		return balance.Moved{}, err
	}
	return balance.Moved{TargetLoad: res.TargetLoad, Freeze: res.Freeze, Total: res.Total}, nil
}

// refusal is the kind of a migration's refusal by its target, if it was
// one. A refusal of no known kind counts as a busy target: it may pass.
func refusal(err error) (balance.Refusal, bool) {
	switch {
	case errors.Is(err, jobs.ErrCPUIncompatible):
		return balance.CPUIncompatible, true
	case errors.Is(err, jobs.ErrTargetUnreachable):
		return balance.Unreachable, true
	case errors.Is(err, jobs.ErrTargetBusy), errors.Is(err, jobs.ErrTargetRefused):
		return balance.Busy, true
	}
	return 0, false
}

func (b *balancer) routes(routes map[string]http.Handler) {
	routes["POST /v1/nodes/{name}/mode"] = http.HandlerFunc(b.handleMode)
	routes["POST /v1/balance"] = http.HandlerFunc(b.handleBalance)
	routes["GET /v1/balance"] = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, api.BalanceState{On: b.ex.Balancing()})
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
			err = c.SetMode(r.Context(), name, req)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("set the mode of %s: %v", name, err), http.StatusBadGateway)
			return
		}
		api.WriteJSON(w, req)
		return
	}
	b.setMode(req.Blocked, req.Draining)
	api.WriteJSON(w, req)
}

// setMode blocks, unblocks or drains this node (nil: unchanged), gossips
// it and says it on the console.
func (b *balancer) setMode(blocked, draining *bool) {
	b.ex.SetMode(blocked, draining)
	bl, dr := b.mode()
	b.cl.refresh()
	b.a.con.Event("mode blocked=%v draining=%v", bl, dr)
}

// handleBalance turns balancing on or off on every node.
func (b *balancer) handleBalance(w http.ResponseWriter, r *http.Request) {
	var req api.BalanceState
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "balance: want {\"on\": BOOL}", http.StatusBadRequest)
		return
	}
	b.ex.SetBalancing(req.On)
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
			err = c.SetBalance(r.Context(), api.BalanceState{On: req.On, Local: true})
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
