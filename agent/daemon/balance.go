package daemon

import (
	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/membership"
)

// view is the cluster as the balancing policy sees it, from what
// membership gossips.
func (c *cluster) view() []balance.Node {
	var out []balance.Node
	for _, m := range c.Members() {
		i := m.Info
		out = append(out, balance.Node{
			Name:     m.Name,
			Cores:    i.Cores,
			Speed:    i.Speed,
			Runnable: float64(max(i.Runnable-1, i.Jobs, 0)), // procs_running counts the sampler itself
			MemTotal: i.MemTotal,
			MemFree:  i.MemFree,
			Accepts:  m.State == membership.StateAlive && i.Cores > 0,
		})
	}
	return out
}

// place chooses the node for a new job: where it would run fastest, this
// node when that is as good.
func (c *cluster) place() (string, string, error) {
	return balance.Place(c.view(), c.a.node.Name, 0, balance.Params{})
}
