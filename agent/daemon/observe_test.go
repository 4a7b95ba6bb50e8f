package daemon

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/driftcluster/drift/agent/api"
)

func TestMemberChanges(t *testing.T) {
	var c changes
	look := func(states ...string) string {
		var nodes []api.Node
		for _, s := range states {
			name, st, _ := strings.Cut(s, "=")
			nodes = append(nodes, api.Node{Name: name, State: st})
		}
		var out []string
		for _, e := range c.members(nodes) {
			out = append(out, e.kind+":"+e.fields["member"].(string))
		}
		return strings.Join(out, " ")
	}
	for _, tt := range []struct {
		look []string
		want string
	}{
		{[]string{"a=alive", "b=alive", "old=dead"}, "join:a join:b"},
		{[]string{"a=alive", "b=alive", "old=dead"}, ""},
		{[]string{"a=alive", "b=suspect"}, "suspect:b"},
		{[]string{"a=alive", "b=dead"}, "death:b"},
		{[]string{"a=alive", "b=alive", "c=alive"}, "join:b join:c"},
	} {
		if got := look(tt.look...); got != tt.want {
			t.Errorf("members(%v) = %q, want %q", tt.look, got, tt.want)
		}
	}
}

func TestStorageChanges(t *testing.T) {
	var c changes
	for _, tt := range []struct {
		st   api.MountStatus
		want map[string]any // nil: no event
	}{
		{api.MountStatus{Target: "/cluster"}, nil},
		{api.MountStatus{Target: "/cluster", Mounted: true, Healthy: true, Source: "9p://10.77.0.1:5640"},
			map[string]any{"mounted": true, "healthy": true, "target": "/cluster", "source": "9p://10.77.0.1:5640"}},
		{api.MountStatus{Target: "/cluster", Mounted: true, Healthy: true, Source: "9p://10.77.0.1:5640"}, nil},
		{api.MountStatus{Target: "/cluster", Mounted: true, Source: "9p://10.77.0.1:5640", Error: "timeout"},
			map[string]any{"mounted": true, "healthy": false, "target": "/cluster", "source": "9p://10.77.0.1:5640", "error": "timeout"}},
	} {
		e, ok := c.storage(tt.st)
		if !ok {
			if tt.want != nil {
				t.Errorf("storage(%+v): no event, want %v", tt.st, tt.want)
			}
			continue
		}
		if diff := cmp.Diff(tt.want, e.fields); diff != "" || e.kind != api.EventStorage {
			t.Errorf("storage(%+v) = %s (-want +got):\n%s", tt.st, e.kind, diff)
		}
	}
}
