package daemon

import (
	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/membership"
)

// gossip is the cluster as the balancer reads it: what membership
// gossips about each member.
type gossip struct{ cl *cluster }

func (g gossip) Nodes() []balance.Node { return nodesOf(g.cl.Members()) }

// nodesOf is what the balancing policy knows of each member.
func nodesOf(members []membership.Member) []balance.Node {
	var out []balance.Node
	for _, m := range members {
		i := m.Info
		out = append(out, balance.Node{
			Name:  m.Name,
			Cores: i.Cores,
			Speed: i.Speed,
			// The drift jobs a node runs: procs_running is one instant's
			// count, too noisy to move jobs on.
			Runnable: float64(i.Jobs),
			MemTotal: i.MemTotal,
			MemFree:  i.MemFree,
			Accepts:  m.State == membership.StateAlive && i.Cores > 0 && !i.Blocked && !i.Draining,
			Draining: i.Draining,
		})
	}
	return out
}
