package qemutests

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// testPowerButton presses worker 1's power button (drift-lab shutdown)
// while it runs two counters started from worker 2: both move to other
// nodes and keep their output whole, worker 1 says on its console that it
// drains and then that no job is left, and its QEMU exits by itself.
// Worker 1 is booted again for the steps after.
func testPowerButton(ctx context.Context, t *testing.T, c *cluster) {
	c.whole(ctx, t)
	l := c.l
	w1 := c.names[1]
	// Balancing off, so both jobs are on worker 1 when the button is
	// pressed: a draining node sends its jobs away all the same.
	execOK(ctx, t, l, 1, "drift", "balance", "off")
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		if !l.Running(2) { // the step failed before it booted worker 1 again
			if err := l.StartNode(cctx, 2); err == nil {
				l.WaitReadyNode(cctx, 2)
			}
		}
		l.Exec(cctx, 1, "drift", "balance", "on")
	})

	const lines = 900 // 90 s at 10 a second: the drain must end well before
	names := []string{"power-a", "power-b"}
	var runs []*bgExec
	var jobs []api.JobInfo
	for _, name := range names {
		runs = append(runs, startExec(ctx, t, l, 3, "drift", "run", "--node", w1, "--name", name,
			"--", "drift-workload", "counter", "-n", strconv.Itoa(lines), "-every", "100ms"))
		jobs = append(jobs, waitNamed(ctx, t, l, 1, name, lab.Running(w1)))
	}
	t.Logf("jobs %s and %s run on %s", jobs[0].ID, jobs[1].ID, w1)
	time.Sleep(2 * time.Second) // some lines before the press

	pressed := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 4*time.Minute) // the agent's own bound is 2 min
	err := l.Shutdown(sctx, 2)
	cancel()
	if err != nil {
		t.Fatalf("press %s's power button: %v", w1, err)
	}
	t.Logf("%s drained and powered off %s after its power button was pressed", w1, since(pressed))
	console, err := os.ReadFile(l.ConsoleLog(2))
	if err != nil {
		t.Fatal(err)
	}
	for _, re := range []*regexp.Regexp{
		regexp.MustCompile(`drift: power button: draining ` + regexp.QuoteMeta(w1) + `, then powering off .*; jobs here: 2`),
		regexp.MustCompile(`drift: mode blocked=true draining=true`),
		regexp.MustCompile(`drift: power off: no job runs on ` + regexp.QuoteMeta(w1) + ` after \S+; powering off`),
	} {
		if m := re.Find(console); m == nil {
			t.Errorf("%s's console has no line matching %q", w1, re)
		} else {
			t.Logf("%s's console: %s", w1, m)
		}
	}

	for _, j := range jobs {
		if got, err := l.Job(ctx, 1, j.ID); err != nil {
			t.Errorf("drift ps of %s: %v", j.ID, err)
		} else if got.State != "running" || got.Node == w1 || got.Moves != 1 {
			t.Errorf("after %s powered off drift ps shows %s %s on %s with %d moves, want it running elsewhere, moved once", w1, j.ID, got.State, got.Node, got.Moves)
		} else {
			t.Logf("%s: %s on %s, %d moves (%s)", j.ID, got.State, got.Node, got.Moves, got.LastMove)
		}
	}
	for i, j := range jobs {
		res := runs[i].wait(ctx, t, 3*time.Minute)
		if res.ExitCode != 0 {
			t.Errorf("drift run of %s exited %d, want 0 (stderr %q)", j.ID, res.ExitCode, res.Stderr)
		}
		if err := countedLines(string(res.Stdout), lines); err != nil {
			t.Errorf("drift run output of %s: %v", j.ID, err)
		}
	}

	if err := l.StartNode(ctx, 2); err != nil {
		t.Fatalf("boot %s again: %v", w1, err)
	}
	t.Logf("node 2 qemu command line: %s", l.CommandLine(2))
	if _, err := l.WaitReadyNode(ctx, 2); err != nil {
		t.Fatalf("%s booted again: %v", w1, err)
	}
	c.whole(ctx, t)
}
