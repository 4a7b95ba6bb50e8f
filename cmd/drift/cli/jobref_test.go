package cli

import (
	"strings"
	"testing"

	"github.com/driftcluster/drift/agent/api"
	"github.com/google/go-cmp/cmp"
)

func TestMatchJob(t *testing.T) {
	list := []api.JobInfo{
		{ID: "a1b2c3-1", Name: "sweep-3", State: "running", Node: "drift-a1b2c3"},
		{ID: "a1b2c3-2", Name: "render", State: "running", Node: "drift-d4e5f6"},
		{ID: "d4e5f6-1", Name: "render", State: "running", Node: "drift-d4e5f6"},
	}
	tests := []struct {
		name    string
		list    []api.JobInfo
		ref     string
		want    string
		wantErr string
	}{
		{"id", list, "a1b2c3-2", "a1b2c3-2", ""},
		{"unique name", list, "sweep-3", "a1b2c3-1", ""},
		{"ambiguous name", list, "render", "", `2 jobs are named "render": give the id of one: a1b2c3-2 (render, running on drift-d4e5f6), d4e5f6-1`},
		{"unknown", list, "a1b2c3-9", "", `no job "a1b2c3-9"; jobs are: a1b2c3-1 (sweep-3, running on drift-a1b2c3), a1b2c3-2`},
		{"no jobs", nil, "x", "", "the cluster has no jobs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := matchJob(tt.list, tt.ref)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("matchJob(%q) = %q, %v; want error containing %q", tt.ref, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("matchJob(%q) = %q, %v; want %q", tt.ref, got, err, tt.want)
			}
		})
	}
}

func TestJobEnv(t *testing.T) {
	tests := []struct {
		name   string
		caller []string
		extra  []string
		want   []string
	}{
		{"path dropped", []string{"HOME=/root", "PATH=/home/me/bin:/usr/bin", "LANG=C"}, nil, []string{"HOME=/root", "LANG=C"}},
		{"env wins", []string{"LANG=C", "X=1"}, []string{"X=2", "Y=3"}, []string{"LANG=C", "X=2", "Y=3"}},
		{"env sets path", []string{"PATH=/a"}, []string{"PATH=/cluster/bin:/usr/bin"}, []string{"PATH=/cluster/bin:/usr/bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, jobEnv(tt.caller, tt.extra)); diff != "" {
				t.Errorf("jobEnv(%q, %q) mismatch (-want +got):\n%s", tt.caller, tt.extra, diff)
			}
		})
	}
}

func TestEnvFlag(t *testing.T) {
	var e envFlag
	for _, bad := range []string{"X", "=1"} {
		if err := e.Set(bad); err == nil {
			t.Errorf("envFlag.Set(%q) = nil, want an error", bad)
		}
	}
	if err := e.Set("A=b=c"); err != nil || e.String() != "A=b=c" {
		t.Errorf("envFlag.Set(%q) = %v, value %q", "A=b=c", err, e.String())
	}
}
