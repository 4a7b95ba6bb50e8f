package membership

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/nodeinfo"
)

func TestAPINodes(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	boot := now.Add(-90 * time.Minute)
	ms := []Member{
		{Name: "drift-a1b2c3", Addr: "10.77.0.1", Port: 7946, State: StateAlive, Since: now.Add(-time.Hour), Self: true,
			Info: nodeinfo.Info{Cores: 4, CPUModel: "AMD EPYC", MHz: 2596, Speed: 1.02, MemTotal: 8 << 30, MemFree: 6 << 30,
				Runnable: 2, Load1: 0.5, Jobs: 1, Role: "head", Version: "v1", BootTime: boot, APIPort: 7947}},
		{Name: "drift-d4e5f6", Addr: "10.77.0.2", Port: 7946, State: StateDead, Since: now.Add(-time.Minute),
			Info: nodeinfo.Info{Cores: 2, Role: "worker", Version: "v1", BootTime: boot}},
		{Name: "drift-777777", Addr: "10.77.0.3", Port: 7946, State: StateSuspect, Since: now, InfoErr: errors.New("bad metadata")},
	}
	want := []api.Node{
		{Name: "drift-a1b2c3", Addr: "10.77.0.1", Port: 7946, State: "alive", StateSince: now.Add(-time.Hour), Self: true,
			Role: "head", Version: "v1", CPUs: 4, CPUModel: "AMD EPYC", MHz: 2596, Speed: 1.02, Load1: 0.5, Runnable: 2,
			MemTotal: 8 << 30, MemFree: 6 << 30, Jobs: 1, BootTime: boot, UptimeSeconds: 5400, APIPort: 7947},
		{Name: "drift-d4e5f6", Addr: "10.77.0.2", Port: 7946, State: "dead", StateSince: now.Add(-time.Minute),
			Role: "worker", Version: "v1", CPUs: 2, BootTime: boot},
		{Name: "drift-777777", Addr: "10.77.0.3", Port: 7946, State: "suspect", StateSince: now, MetaError: "bad metadata"},
	}
	if diff := cmp.Diff(want, APINodes(ms, now)); diff != "" {
		t.Errorf("APINodes() mismatch (-want +got):\n%s", diff)
	}
}
