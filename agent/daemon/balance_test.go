package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/driftcluster/drift/agent/balance"
	"github.com/driftcluster/drift/agent/jobs"
	"github.com/driftcluster/drift/agent/membership"
	"github.com/driftcluster/drift/agent/nodeinfo"
	"github.com/google/go-cmp/cmp"
)

func TestNodesOf(t *testing.T) {
	info := nodeinfo.Info{Cores: 2, Speed: 1.5, MemTotal: 4 << 30, MemFree: 3 << 30, Jobs: 3, Runnable: 9}
	member := func(name string, st membership.State, edit func(*nodeinfo.Info)) membership.Member {
		i := info
		if edit != nil {
			edit(&i)
		}
		return membership.Member{Name: name, State: st, Info: i}
	}
	node := func(name string, accepts, draining bool) balance.Node {
		return balance.Node{Name: name, Cores: 2, Speed: 1.5, Runnable: 3, MemTotal: 4 << 30, MemFree: 3 << 30, Accepts: accepts, Draining: draining}
	}
	got := nodesOf([]membership.Member{
		member("alive", membership.StateAlive, nil),
		member("suspect", membership.StateSuspect, nil),
		member("dead", membership.StateDead, nil),
		member("blocked", membership.StateAlive, func(i *nodeinfo.Info) { i.Blocked = true }),
		member("draining", membership.StateAlive, func(i *nodeinfo.Info) { i.Blocked, i.Draining = true, true }),
	})
	noInfo := balance.Node{Name: "noinfo"}
	got = append(got, nodesOf([]membership.Member{{Name: "noinfo", State: membership.StateAlive}})...)
	want := []balance.Node{
		node("alive", true, false),
		node("suspect", false, false),
		node("dead", false, false),
		node("blocked", false, false),
		node("draining", false, true),
		noInfo, // no metadata yet: takes no job
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("nodesOf: (-want +got)\n%s", diff)
	}
}

func TestRefusal(t *testing.T) {
	wrap := func(kind error) error {
		return fmt.Errorf("migrate j to w2: the target says no: %w: %w", kind, jobs.ErrTargetRefused)
	}
	for _, tt := range []struct {
		name string
		err  error
		want balance.Refusal // 0: not a refusal
	}{
		{"busy", wrap(jobs.ErrTargetBusy), balance.Busy},
		{"cpu", wrap(jobs.ErrCPUIncompatible), balance.CPUIncompatible},
		{"unreachable", wrap(jobs.ErrTargetUnreachable), balance.Unreachable},
		{"refused, of no known kind", fmt.Errorf("migrate j: %w", jobs.ErrTargetRefused), balance.Busy},
		{"target died during the move", fmt.Errorf("migrate j to w2: restore: context canceled (w2 left the cluster: %w)", jobs.ErrTargetUnreachable), balance.Unreachable},
		{"CRIU failed", errors.New("migrate j to w2: criu dump: exit status 1"), 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := refusal(tt.err)
			if got != tt.want || ok != (tt.want != 0) {
				t.Errorf("refusal(%q) = %v, %v; want %v", tt.err, got, ok, tt.want)
			}
		})
	}
}
