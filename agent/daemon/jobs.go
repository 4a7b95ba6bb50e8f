package daemon

import (
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/membership"
)

// peers reaches other agents through membership: a node's API is on its
// memberlist address at the API port, over mutual TLS with the cluster key.
type peers struct {
	a  *agent
	cl *cluster
}

func (p *peers) Client(node string) (*api.Client, error) {
	for _, m := range p.cl.Members() {
		if m.Name != node {
			continue
		}
		port := m.Info.APIPort
		if port == 0 {
			port = api.DefaultPort
		}
		addr := net.JoinHostPort(m.Addr, strconv.Itoa(port))
		if m.State == membership.StateDead {
			p.a.clients.forget(addr)
			return nil, fmt.Errorf("node %s is down (drift nodes lists the nodes and their state)", node)
		}
		return p.a.clients.get(addr, p.a.keys.Current())
	}
	return nil, fmt.Errorf("no node %s in the cluster (drift nodes lists them)", node)
}

// peerClients keeps one API client per peer's address and key, so that
// calls to a peer reuse its TLS connections instead of shaking hands
// for each: a move makes several calls, and handshakes were about 9% of
// an agent's CPU while it moved jobs. A new key (drift rekey) makes a
// new client; a peer seen dead loses its kept connections, so that the
// machine that comes back at its address gets new ones.
type peerClients struct {
	mu sync.Mutex
	m  map[peerClientKey]*api.Client
}

type peerClientKey struct {
	addr string
	key  clusterkey.Key
}

func (pc *peerClients) get(addr string, k clusterkey.Key) (*api.Client, error) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if c, ok := pc.m[peerClientKey{addr, k}]; ok {
		return c, nil
	}
	c, err := api.Remote(addr, k)
	if err != nil {
		return nil, err
	}
	pc.forgetLocked(addr) // a client under the key before a rekey
	if pc.m == nil {
		pc.m = map[peerClientKey]*api.Client{}
	}
	pc.m[peerClientKey{addr, k}] = c
	return c, nil
}

func (pc *peerClients) forget(addr string) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	pc.forgetLocked(addr)
}

func (pc *peerClients) forgetLocked(addr string) {
	for k, c := range pc.m {
		if k.addr == addr {
			c.CloseIdleConnections()
			delete(pc.m, k)
		}
	}
}

// Idle lists the other live nodes that take work and, as they last
// gossiped, have a core that runs no job, and one not much slower than
// this node's (at least 3/4 of its measured speed, which wanders by a
// tenth or so from one measurement to the next).
func (p *peers) Idle() []string {
	members := p.cl.Members()
	self := 0.0
	for _, m := range members {
		if m.Self {
			self = m.Info.Speed
		}
	}
	var out []string
	for _, m := range members {
		i := m.Info
		if !m.Self && m.State == membership.StateAlive && i.Cores > 0 && i.Jobs < i.Cores && !i.Blocked && !i.Draining && i.Speed >= 0.75*self {
			out = append(out, m.Name)
		}
	}
	return out
}

func (p *peers) Nodes() []string {
	var out []string
	for _, m := range p.cl.Members() {
		if m.State != membership.StateDead {
			out = append(out, m.Name)
		}
	}
	return out
}
