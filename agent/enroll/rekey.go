package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// Rotation runs drift rekey and drift remove on the node asked: it makes
// a new key and moves every member to it in three steps, each done on
// every member before the next begins (api.RekeyInstall, RekeyUse,
// RekeyDrop), so that gossip and the API keep working throughout and no
// job stops. A member that fails a step is left out of the next ones and
// reported: once the old key is dropped the cluster refuses it.
type Rotation struct {
	Self      string                // this node's name
	ClusterID string                // the cluster's ID, unchanged by rekeys
	Current   func() clusterkey.Key // the key in use now; required
	Nodes     func() []api.Node     // the members as this node sees them, itself included; required
	// Client returns an API client of a member, with the key in use;
	// required.
	Client func(node string) (*api.Client, error)
	// Local runs a step on this node; required.
	Local    func(ctx context.Context, st api.RekeyStep) (api.RekeyStepResult, error)
	Generate func() (clusterkey.Key, error)   // nil: clusterkey.Generate
	Event    func(format string, args ...any) // a console line; nil: none
	Logger   *slog.Logger                     // nil: slog.Default()
	// StepTimeout bounds one step on one node; 0: 20s.
	StepTimeout time.Duration

	mu sync.Mutex // one rekey at a time from this node
}

// Rekey moves the cluster to a new key, leaving out req.Without.
func (r *Rotation) Rekey(ctx context.Context, req api.RekeyRequest) (api.RekeyResult, error) {
	if !r.mu.TryLock() {
		return api.RekeyResult{}, fmt.Errorf("a rekey is already running from %s: wait for it to end: %w", r.Self, api.ErrConflict)
	}
	defer r.mu.Unlock()
	return r.rekey(ctx, req)
}

func (r *Rotation) rekey(ctx context.Context, req api.RekeyRequest) (api.RekeyResult, error) {
	nodes := r.Nodes()
	for _, w := range req.Without {
		i := slices.IndexFunc(nodes, func(n api.Node) bool { return n.Name == w })
		switch {
		case w == r.Self:
			return api.RekeyResult{}, fmt.Errorf("cannot leave out %s, the node that runs the rekey: ask another node (--cluster ADDR): %w", w, api.ErrBadRequest)
		case i < 0:
			return api.RekeyResult{}, fmt.Errorf("no node %s in the cluster (drift nodes lists them): %w", w, api.ErrNotFound)
		}
	}
	gen := r.Generate
	if gen == nil {
		gen = clusterkey.Generate
	}
	next, err := gen()
	if err != nil {
		return api.RekeyResult{}, err
	}
	old := r.Current()
	res := api.RekeyResult{ClusterID: r.ClusterID, OldKeyID: old.ID(), KeyID: next.ID(), Key: next.Hex(),
		Without: req.Without, Took: []string{}, Missed: []api.RekeyMiss{}}
	var targets []string
	for _, n := range nodes {
		switch {
		case slices.Contains(req.Without, n.Name):
		case n.State == api.NodeDead && !n.Self:
			res.Missed = append(res.Missed, api.RekeyMiss{Node: n.Name, Error: "down: it keeps the old key, which the cluster refuses from now on"})
		default:
			targets = append(targets, n.Name)
		}
	}
	if !slices.Contains(targets, r.Self) {
		return api.RekeyResult{}, fmt.Errorf("%s is not a member yet: try again in a few seconds: %w", r.Self, api.ErrUnavailable)
	}
	r.event("rekey: moving %d nodes from key %s to key %s (cluster %s)", len(targets), old.ID(), next.ID(), r.ClusterID)
	st := api.RekeyStep{Key: next.Hex(), Cluster: r.ClusterID, By: r.Self}
	for _, step := range []string{api.RekeyInstall, api.RekeyUse, api.RekeyDrop} {
		st.Step = step
		var missed []api.RekeyMiss
		targets, missed = r.each(ctx, targets, st)
		res.Missed = append(res.Missed, missed...)
		if !slices.Contains(targets, r.Self) {
			// This node could not change its own keys: the others may
			// hold the new key already; running the rekey again moves
			// them all to a newer one.
			return res, fmt.Errorf("rekey step %s on %s: %s", step, r.Self, missedError(missed, r.Self))
		}
	}
	res.Took = targets
	slices.SortFunc(res.Missed, func(a, b api.RekeyMiss) int { return strings.Compare(a.Node, b.Node) })
	r.event("rekey: done: key %s; %d nodes took it, %d did not", next.ID(), len(res.Took), len(res.Missed))
	return res, nil
}

// each runs st on every node of targets at once and returns those that
// did it, and the others with their errors.
func (r *Rotation) each(ctx context.Context, targets []string, st api.RekeyStep) ([]string, []api.RekeyMiss) {
	timeout := r.StepTimeout
	if timeout == 0 {
		timeout = 20 * time.Second
	}
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, node := range targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			errs[i] = r.step(ctx, node, st)
		}()
	}
	wg.Wait()
	var ok []string
	var missed []api.RekeyMiss
	for i, node := range targets {
		if errs[i] != nil {
			r.log().Warn("rekey: a node did not take a step", "node", node, "step", st.Step, "err", errs[i])
			missed = append(missed, api.RekeyMiss{Node: node, Error: fmt.Sprintf("step %s: %v", st.Step, errs[i])})
			continue
		}
		ok = append(ok, node)
	}
	return ok, missed
}

func (r *Rotation) step(ctx context.Context, node string, st api.RekeyStep) error {
	if node == r.Self {
		_, err := r.Local(ctx, st)
		return err
	}
	c, err := r.Client(node)
	if err != nil {
		return err
	}
	_, err = c.RekeyStep(ctx, st)
	return err
}

// Remove makes node's credentials useless: the head's enrolment refuses
// it from now on (if it network-booted), it is told so, and the cluster
// moves to a new key without it.
func (r *Rotation) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveResult, error) {
	if !r.mu.TryLock() {
		return api.RemoveResult{}, fmt.Errorf("a rekey is already running from %s: wait for it to end: %w", r.Self, api.ErrConflict)
	}
	defer r.mu.Unlock()
	nodes := r.Nodes()
	i := slices.IndexFunc(nodes, func(n api.Node) bool { return n.Name == req.Node })
	if i < 0 {
		return api.RemoveResult{}, fmt.Errorf("no node %s in the cluster (drift nodes lists them): %w", req.Node, api.ErrNotFound)
	}
	n := nodes[i]
	switch {
	case n.Self:
		return api.RemoveResult{}, fmt.Errorf("%s is the node this command asks: ask another node (on its console, or --cluster ADDR): %w", n.Name, api.ErrBadRequest)
	case n.Role == "head":
		return api.RemoveResult{}, fmt.Errorf("%s is the head (it serves /cluster, network boot and enrolment): the cluster cannot go on without it: %w", n.Name, api.ErrConflict)
	case n.State != api.NodeDead && n.Jobs > 0 && !req.Force:
		return api.RemoveResult{}, fmt.Errorf("%d jobs run on %s: move them first with drift drain %s, or remove it anyway with --force (they stay on it, cut off): %w", n.Jobs, n.Name, n.Name, api.ErrConflict)
	}
	res := api.RemoveResult{Node: n.Name, Enrolment: r.refuseEnrolment(ctx, nodes, n.Name)}
	if n.State != api.NodeDead {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := r.step(ctx, n.Name, api.RekeyStep{Step: api.RekeyRemoved, Cluster: r.ClusterID, By: r.Self}); err != nil {
			r.log().Info("remove: tell the node", "node", n.Name, "err", err)
		}
		cancel()
	}
	r.event("remove: %s: %s", n.Name, res.Enrolment)
	var err error
	res.Rekey, err = r.rekey(ctx, api.RekeyRequest{Without: []string{n.Name}})
	return res, err
}

// refuseEnrolment refuses node at the head's enrolment and says what that
// means.
func (r *Rotation) refuseEnrolment(ctx context.Context, nodes []api.Node, node string) string {
	i := slices.IndexFunc(nodes, func(n api.Node) bool { return n.Role == "head" && n.State != api.NodeDead })
	if i < 0 {
		return "no head is up to refuse its enrolment: if it network-booted, run drift reject " + node + " on the head when it is back"
	}
	c, err := r.Client(nodes[i].Name)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		_, err = c.EnrollReject(ctx, node)
	}
	switch {
	case errors.Is(err, api.ErrNotFound):
		return "it did not network-boot from the head, so its boot medium holds the old key, which the cluster refuses after this rekey; to let it back, boot it from a medium made with the new key"
	case err != nil:
		return fmt.Sprintf("the head did not refuse its enrolment (%v): run drift reject %s on the head", err, node)
	}
	return "the head's enrolment refuses it from now on; drift admit " + node + " lets it join again"
}

func (r *Rotation) event(format string, args ...any) {
	if r.Event != nil {
		r.Event(format, args...)
	}
	r.log().Info(fmt.Sprintf(format, args...))
}

func (r *Rotation) log() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func missedError(ms []api.RekeyMiss, node string) string {
	for _, m := range ms {
		if m.Node == node {
			return m.Error
		}
	}
	return "failed"
}

// StepRing takes st's part on the keys of r: install accepts the key,
// use makes it current (it must be installed), drop keeps only the
// current key; removed changes nothing. It returns the step's key (install,
// use) and the keys dropped. The agent adds gossip's keyring and its key
// file to it.
func StepRing(r *clusterkey.Ring, st api.RekeyStep) (k clusterkey.Key, dropped []clusterkey.Key, err error) {
	if st.Step == api.RekeyInstall || st.Step == api.RekeyUse {
		if k, err = clusterkey.Parse([]byte(st.Key)); err != nil {
			return k, nil, fmt.Errorf("rekey step %s: %v: %w", st.Step, err, api.ErrBadRequest)
		}
	}
	switch st.Step {
	case api.RekeyInstall:
		r.Install(k)
	case api.RekeyUse:
		if err := r.Use(k); err != nil {
			return k, nil, fmt.Errorf("rekey step use: %v: %w", err, api.ErrConflict)
		}
	case api.RekeyDrop:
		dropped = r.Drop()
	case api.RekeyRemoved:
	default:
		return k, nil, fmt.Errorf("rekey step %q: want %s, %s, %s or %s: %w", st.Step, api.RekeyInstall, api.RekeyUse, api.RekeyDrop, api.RekeyRemoved, api.ErrBadRequest)
	}
	return k, dropped, nil
}
