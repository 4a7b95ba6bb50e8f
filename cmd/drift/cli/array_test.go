package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func TestRunArrayUsageErrors(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(empty, []byte("\n\n"), 0o644)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--mem", "1G", "--", "x"}, "--mem is for sweeps"},
		{[]string{"--array", "5-1", "--", "x"}, "last index is below the first"},
		{[]string{"--array", "1-3", "--array-file", empty, "--", "x"}, "give one of them"},
		{[]string{"--array-file", "/nonexistent/f", "--", "x"}, "no such file"},
		{[]string{"--array-file", "/cluster/nonexistent/params", "--", "x"}, "read on this machine, which does not mount /cluster; give a file here, or fetch it first (drift cp :nonexistent/params .)"},
		{[]string{"--array-file", empty, "--", "x"}, "has no lines"},
		{[]string{"--array", "1-3", "--mem", "lots", "--", "x"}, "want a number"},
		{[]string{"--array", "1-3", "--node", "n", "--", "x"}, "for single jobs"},
	} {
		var out, errw bytes.Buffer
		code := Main(context.Background(), append([]string{"run", "--socket", "/nonexistent.sock"}, tt.args...), nil, &out, &errw)
		if code == 0 || !strings.Contains(errw.String(), tt.want) {
			t.Errorf("drift run %q = %d, %q; want an error saying %q", tt.args, code, errw.String(), tt.want)
		}
	}
}

func TestArrayProgress(t *testing.T) {
	start := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	a := api.ArrayInfo{ID: "a-d1b102-3", Tasks: 10, Queued: 4, Running: 2, Done: 3, Failed: 1, Started: start}
	got := arrayProgress(a, start.Add(40*time.Second))
	want := "a-d1b102-3: 4 queued, 2 running, 3 done, 1 failed of 10; 40s elapsed, about 1m0s left"
	if got != want {
		t.Errorf("arrayProgress = %q, want %q", got, want)
	}
	a.Queued, a.Ready = 2, 2 // two of them started ahead, waiting for a core
	want = "a-d1b102-3: 2 queued, 2 running (2 more ready), 3 done, 1 failed of 10; 40s elapsed, about 1m0s left"
	if got := arrayProgress(a, start.Add(40*time.Second)); got != want {
		t.Errorf("arrayProgress = %q, want %q", got, want)
	}
}

func TestWithoutTasks(t *testing.T) {
	jobs := []api.JobInfo{{ID: "d1b102-1", Name: "a-d1b102-3/1"}, {ID: "d1b102-2", Name: "sim"}, {ID: "d1b102-4", Name: "a-d1b102-9/1"}}
	got := withoutTasks(jobs, []api.ArrayInfo{{ID: "a-d1b102-3"}})
	if len(got) != 2 || got[0].ID != "d1b102-2" || got[1].ID != "d1b102-4" {
		t.Errorf("withoutTasks = %+v, want the jobs that are not tasks of a-d1b102-3", got)
	}
}

func TestWaitArrayInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errw bytes.Buffer
	// No agent answers: the wait keeps asking until interrupted.
	err := waitArray(ctx, api.Local("/nonexistent.sock"), "a-d1b102-3", &out, &errw, false)
	if ee, ok := err.(exitError); !ok || ee.code != 130 || !strings.Contains(errw.String(), "drift wait a-d1b102-3") {
		t.Errorf("waitArray interrupted = %v, %q; want exit 130 and how to follow it again", err, errw.String())
	}
}

func TestFailedTasks(t *testing.T) {
	three, one := 3, 1
	list := []api.TaskInfo{
		{Task: "1", State: api.TaskDone},
		{Task: "2", State: api.TaskFailed, Exit: &three, Node: "drift-d1b102", Stderr: "/cluster/drift/arrays/a-d1b102-3/2.err"},
		{Task: "3", State: api.TaskFailed, Signal: 9, Exit: &one, Node: "drift-d1b103", Attempts: 2},
		{Task: "4", State: api.TaskFailed, Error: "node drift-d1b101 died"},
		{Task: "5", State: api.TaskCancelled},
	}
	got := failedTasks("a-d1b102-3", list, 2)
	want := "  task 2: exit 3 on drift-d1b102; its stderr: /cluster/drift/arrays/a-d1b102-3/2.err\n" +
		"  task 3: killed by signal 9 on drift-d1b103 after 2 tries\n" +
		"  and 1 more failed: drift ps a-d1b102-3 lists every task\n"
	if got != want {
		t.Errorf("failedTasks:\n%s\nwant:\n%s", got, want)
	}
	if got := failedTasks("a-d1b102-3", list[:1], 5); got != "" {
		t.Errorf("no failed task: %q", got)
	}
}
