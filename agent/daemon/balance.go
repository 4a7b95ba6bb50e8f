package daemon

import (
	"math"
	"time"

	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/membership"
)

// view is the cluster as the balancing policy sees it, from what
// membership gossips.
func (c *cluster) view() []balance.Node {
	out := c.rawView()
	fastest := 0.0
	for _, n := range out {
		fastest = max(fastest, n.Speed)
	}
	for i := range out {
		out[i].Speed = coarseSpeed(out[i].Speed, fastest)
	}
	return out
}

// coarseSpeed counts a node's speed in halvings below the fastest node's:
// a node is half as fast only when it measures at most half the fastest.
// The speed benchmark is a few milliseconds of work, and on shared or
// busy hardware it reads tens of percent low; moving jobs on such noise
// would make them wander.
func coarseSpeed(s, fastest float64) float64 {
	if s <= 0 || fastest <= 0 {
		return s
	}
	return fastest / math.Exp2(math.Floor(math.Log2(fastest/s)))
}

func (c *cluster) rawView() []balance.Node {
	var out []balance.Node
	for _, m := range c.Members() {
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

// place chooses the node for a new job: where it would run fastest, this
// node when that is as good. Placements of the last few seconds count as
// load on their node until gossip shows them, so that jobs started in a
// burst spread out.
func (c *cluster) place() (string, string, error) {
	c.placeMu.Lock()
	defer c.placeMu.Unlock()
	now := time.Now()
	view := c.view()
	for i := range view {
		view[i].Runnable += float64(c.placed.count(view[i].Name, now))
	}
	node, why, err := balance.Place(view, c.a.node.Name, 0, balance.Params{})
	if err == nil {
		c.placed.add(node, now)
	}
	return node, why, err
}
