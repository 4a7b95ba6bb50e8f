package daemon

import (
	"context"
	"net/http"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/arrays"
	"github.com/driftcluster/drift/agent/supervise"
)

// startArrays runs this node's share of the cluster's task queue (drift
// run --array) and returns its API routes.
func (a *agent) startArrays(ctx context.Context, cl *cluster) map[string]http.Handler {
	s := &arrays.Service{
		Self:      a.node.Name,
		Jobs:      a.jobs,
		Agent:     api.Local(api.DefaultSocket),
		Alive:     (&peers{a: a, cl: cl}).Nodes,
		Peer:      (&peers{a: a, cl: cl}).Client,
		Idle:      (&peers{a: a, cl: cl}).Idle,
		Accepting: a.bal.accepting,
		// From the mount's own state, not a stat of /cluster: that is a
		// message to the head, from every node, at every look.
		Shared: func() bool { return a.shared != nil && a.shared() == nil },
		Logger: a.log,
	}
	a.bal.tasks.Store(s)
	a.sup.Start(ctx, supervise.Service{Name: "arrays", Run: s.Run})
	return s.Routes()
}
