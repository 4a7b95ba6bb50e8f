package membership

import (
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// APINode is the member as the agent's API lists it, at now.
func (m Member) APINode(now time.Time) api.Node {
	n := api.Node{
		Name: m.Name, Addr: m.Addr, Port: m.Port, State: string(m.State), StateSince: m.Since, Self: m.Self,
		Role: m.Info.Role, Version: m.Info.Version, CPUs: m.Info.Cores, CPUModel: m.Info.CPUModel,
		MHz: m.Info.MHz, Speed: m.Info.Speed, Load1: m.Info.Load1, Runnable: m.Info.Runnable,
		MemTotal: m.Info.MemTotal, MemFree: m.Info.MemFree, Jobs: m.Info.Jobs,
		BootTime: m.Info.BootTime, APIPort: m.Info.APIPort, Blocked: m.Info.Blocked, Draining: m.Info.Draining,
	}
	if m.State != StateDead {
		n.UptimeSeconds = m.Info.Uptime(now).Seconds()
	}
	if m.InfoErr != nil {
		n.MetaError = m.InfoErr.Error()
	}
	return n
}

// APINodes lists members as the agent's API does, at now.
func APINodes(ms []Member, now time.Time) []api.Node {
	out := make([]api.Node, 0, len(ms))
	for _, m := range ms {
		out = append(out, m.APINode(now))
	}
	return out
}
