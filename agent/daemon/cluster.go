package daemon

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/discovery"
	"github.com/driftcluster/drift/agent/membership"
	"github.com/driftcluster/drift/agent/nodeinfo"
	"github.com/driftcluster/drift/agent/version"
)

// cluster runs membership and discovery for the node's primary address
// and starts them again when that address changes (memberlist cannot
// move to a new address while it runs): a node that fell back to a
// link-local address and later gets a lease from the head rejoins with
// the lease.
type cluster struct {
	a   *agent
	net *network
	cur atomic.Pointer[membership.Membership]

	samplerOnce sync.Once
	sampler     *nodeinfo.Sampler // kept across rejoins: it remembers the node's measured speed
}

// Members serves the API: the members as the current membership sees them.
func (c *cluster) Members() []membership.Member {
	if m := c.cur.Load(); m != nil {
		return m.Members()
	}
	return nil
}

// Nodes serves the API: the members in its terms, at now.
func (c *cluster) Nodes(now time.Time) []api.Node {
	return membership.APINodes(c.Members(), now)
}

// Run keeps membership and discovery running on the current primary
// address until ctx ends.
// refresh gossips this node's load and mode now.
func (c *cluster) refresh() {
	if m := c.cur.Load(); m != nil {
		m.Refresh()
	}
}

func (c *cluster) Run(ctx context.Context) error {
	for {
		addr := c.net.primary()
		if !addr.IsValid() {
			select {
			case <-ctx.Done():
				return nil
			case <-c.net.changed:
				continue
			case <-time.After(time.Second):
				continue
			}
		}
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- c.runOn(rctx, addr) }()
		changed := false
		for !changed {
			select {
			case <-ctx.Done():
				cancel()
				<-done
				return nil
			case err := <-done:
				cancel()
				return err
			case <-c.net.changed:
			case <-time.After(2 * time.Second):
			}
			changed = c.net.primary() != addr
		}
		c.a.log.Info("primary address changed: rejoining", "old", addr, "new", c.net.primary())
		cancel()
		<-done
	}
}

// runOn runs membership and discovery bound to addr until ctx ends.
func (c *cluster) runOn(ctx context.Context, addr netip.Addr) error {
	a := c.a
	c.samplerOnce.Do(func() {
		c.sampler = &nodeinfo.Sampler{Role: string(a.node.Role), Version: version.Get(), APIPort: api.DefaultPort, Jobs: a.jobs.Load, Mode: a.bal.mode}
	})
	sampler := c.sampler
	var lastPeers atomic.Int64
	lastPeers.Store(-1)
	mem, err := membership.New(membership.Config{
		Name:     a.node.Name,
		BindAddr: addr.String(),
		Key:      a.keys.Current(),
		Accept:   a.keys.Accepted(),
		Label:    membership.Label(a.keys.ClusterID()),
		OnJoinError: func(addrs []string, err error) {
			a.joinRefused(addrs, err)
		},
		Seeds:  a.node.Options.Join,
		Meta:   sampler.Sample,
		Logger: a.log,
		OnPeers: func(n int) {
			if lastPeers.Swap(int64(n)) != int64(n) {
				a.con.Event("peers=%d", n)
			}
		},
		// A peer whose job ended may take one of ours now: look at
		// once, not at the next period.
		OnLighter: func(string) { a.bal.ex.Wake() },
	})
	if err != nil {
		return err
	}
	disc, err := discovery.New(discovery.Config{
		Self: discovery.Record{ClusterID: a.keys.ClusterID(), Node: a.node.Name, Version: version.Get(),
			APIPort: api.DefaultPort, MemberlistPort: membership.DefaultPort},
		Interfaces: ifaceList(c.net.primaryIface()),
		Addrs:      []string{addr.String()},
		OnPeers:    mem.Join,
		Logger:     a.log,
	})
	if err != nil {
		return err
	}
	c.cur.Store(mem)
	a.node.phases.Mark(boot.PhaseMembership)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, 2)
	go func() { errs <- mem.Run(ctx) }()
	go func() { errs <- disc.Run(ctx) }()
	err = <-errs
	if ctx.Err() == nil && err != nil {
		a.log.Error("cluster service stopped", "err", err)
	}
	// Stop the other one too and wait for it: both belong to this address.
	cancel()
	<-errs
	return err
}

func ifaceList(name string) []string {
	if name == "" {
		return nil
	}
	return []string{name}
}
