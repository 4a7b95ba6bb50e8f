package daemon

import (
	"fmt"
	"net"
	"strconv"

	"github.com/driftcluster/drift/agent/api"
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
		if m.State == membership.StateDead {
			return nil, fmt.Errorf("node %s is down", node)
		}
		port := m.Info.APIPort
		if port == 0 {
			port = api.DefaultPort
		}
		return api.Remote(net.JoinHostPort(m.Addr, strconv.Itoa(port)), p.a.keys.Current())
	}
	return nil, fmt.Errorf("no node %s in the cluster (drift nodes lists them)", node)
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
