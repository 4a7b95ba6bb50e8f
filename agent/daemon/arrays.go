package daemon

import (
	"context"
	"net/http"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/arrays"
	"github.com/driftcluster/drift/agent/storage"
	"github.com/driftcluster/drift/agent/supervise"
	"golang.org/x/sys/unix"
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
		Shared:    func() bool { return isMounted(storage.MountPoint) },
		Logger:    a.log,
	}
	a.bal.tasks.Store(s)
	a.sup.Start(ctx, supervise.Service{Name: "arrays", Run: s.Run})
	return s.Routes()
}

// isMounted reports whether dir is on another device than its parent.
func isMounted(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(dir+"/..", &parent) != nil {
		return false
	}
	return st.Dev != parent.Dev
}
