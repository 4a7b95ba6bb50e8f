package qemutests

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Goals the load-balancing issue sets as behaviour.
const (
	spreadDeadline = 90 * time.Second // six CPU-bound jobs started on one node spread 2/2/2 (±1)
	maxMovesPerJob = 2
)

// testBalance starts six CPU-bound jobs on worker 1 and types no
// migrate: they must spread over the three nodes, no job moving more than
// twice; then draining worker 1 must leave it empty with every job still
// running. Only its own six jobs count: drift ps lists the other steps'
// jobs too, ended.
func testBalance(ctx context.Context, t *testing.T, c *cluster) {
	c.whole(ctx, t)
	l, names := c.l, c.names
	w1 := names[1]
	var (
		ids     []string // killed at the end, or by the cleanup
		drained bool     // w1 is drained: unblocked at the end, or by the cleanup
	)
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, id := range ids {
			l.Exec(cctx, 1, "drift", "kill", "-s", "KILL", id)
		}
		if drained {
			l.Exec(cctx, 1, "drift", "unblock", w1)
		}
	})
	for range 6 {
		res := execOK(ctx, t, l, 2, "drift", "run", "-d", "--node", w1, "--", "drift-workload", "burn")
		ids = append(ids, string(trimNL(res.Stdout)))
	}
	started := time.Now()
	t.Logf("started %v on %s", ids, w1)

	var ps []api.JobInfo
	spread := false
	for time.Since(started) < spreadDeadline && !spread {
		time.Sleep(3 * time.Second)
		ps = listJobs(ctx, t, l, 1, ids)
		counts := perNode(ps, names)
		spread = true
		for _, n := range names {
			spread = spread && counts[n] >= 1 && counts[n] <= 3
		}
		t.Logf("after %s: %v", since(started), counts)
	}
	if !spread {
		t.Fatalf("after %s the jobs are spread %v, want 2/2/2 (±1)", spreadDeadline, perNode(ps, names))
	}
	// Give the balancer a few more rounds: the spread must hold, and no job
	// may wander.
	time.Sleep(15 * time.Second)
	ps = listJobs(ctx, t, l, 1, ids)
	for _, j := range ps {
		if j.Moves > maxMovesPerJob {
			t.Errorf("job %s moved %d times, want at most %d (last: %s)", j.ID, j.Moves, maxMovesPerJob, j.LastMove)
		}
		if j.Moves > 0 && j.LastMove == "" {
			t.Errorf("job %s moved without a reason in drift ps", j.ID)
		}
	}
	t.Logf("spread after %s, %v; moves: %v", since(started), perNode(ps, names), moves(ps))

	drained = true
	execOK(ctx, t, l, 1, "drift", "drain", w1)
	ps = listJobs(ctx, t, l, 1, ids)
	counts := perNode(ps, names)
	running := 0
	for _, j := range ps {
		if j.State == "running" {
			running++
		}
	}
	if counts[w1] != 0 || running != 6 {
		t.Errorf("after drift drain %s: %v, %d running; want none on %s and all 6 running", w1, counts, running, w1)
	}
	execOK(ctx, t, l, 1, "drift", "unblock", w1)
	drained = false
	for _, id := range ids {
		execOK(ctx, t, l, 1, "drift", "kill", "-s", "KILL", id)
	}
	ids = nil
}

// listJobs runs drift ps --json on node n and returns the jobs it lists
// whose ids are in ids.
func listJobs(ctx context.Context, t *testing.T, l *lab.Lab, n int, ids []string) []api.JobInfo {
	t.Helper()
	var ps []api.JobInfo
	res := execOK(ctx, t, l, n, "drift", "ps", "--json")
	if err := json.Unmarshal(res.Stdout, &ps); err != nil {
		t.Fatalf("drift ps --json: %v: %s", err, res.Stdout)
	}
	var mine []api.JobInfo
	for _, j := range ps {
		if slices.Contains(ids, j.ID) {
			mine = append(mine, j)
		}
	}
	return mine
}

// perNode counts the running jobs on each node.
func perNode(ps []api.JobInfo, names []string) map[string]int {
	c := map[string]int{}
	for _, n := range names {
		c[n] = 0
	}
	for _, j := range ps {
		if j.State == "running" {
			c[j.Node]++
		}
	}
	return c
}

func moves(ps []api.JobInfo) string {
	s := ""
	for _, j := range ps {
		s += fmt.Sprintf("%s:%d ", j.ID, j.Moves)
	}
	return s
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
