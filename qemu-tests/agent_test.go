package qemutests

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// testStdinAcrossMove moves a job that has not yet read the stdin it was
// given, which has ended: after the move it reads the end, as it would
// have where it started, rather than waiting for ever. (The bytes it had
// not read yet do not follow it: CRIU does not carry what is queued in a
// pipe it hands over; the test logs what arrived.)
func testStdinAcrossMove(ctx context.Context, t *testing.T, c *cluster) {
	l, ws, from, to := c.l, newWorkstation(t, c.l, c.img), c.names[1], c.names[2]
	type result struct {
		out  string
		code int
	}
	done := make(chan result, 1)
	go func() {
		res := ws.run(ctx, t, "", strings.NewReader("hello\nworld\n"),
			"run", "--stay", "--node", from, "--name", "reader", "--", "sh", "-c", "sleep 25; cat; echo read-all")
		done <- result{string(res.Stdout), res.ExitCode}
	}()
	job := waitNamed(ctx, t, l, 1, "reader", lab.Running(from))
	res, err := l.Migrate(ctx, 1, job.ID, to)
	if err != nil {
		t.Fatalf("move %s to %s while it sleeps: %v", job.ID, to, err)
	}
	t.Logf("moved %s → %s: freeze %s", res.From, res.To, res.Freeze.Round(time.Millisecond))
	select {
	case r := <-done:
		if want := "hello\nworld\nread-all\n"; r.code != 0 || r.out != want {
			t.Errorf("drift run of a job moved before it read its ended stdin: exit %d, output %q; want 0 and %q: what it had not read, then the end of input", r.code, r.out, want)
		}
	case <-time.After(3 * time.Minute):
		t.Errorf("the job moved after its stdin ended never ended: it waits for an end of input that did not follow it")
	}
}

var agentRestartRE = regexp.MustCompile(`drift: error agent stopped \(.*\): starting it again`)

// testAgentRestart kills worker 2's agent with kill -9: the driftd that
// init started brings it back, the node rejoins, and both are shielded
// from the OOM killer while a job is not.
func testAgentRestart(ctx context.Context, t *testing.T, c *cluster) {
	l, n, name, names := c.l, 3, c.names[2], c.names
	// The agent is the driftd whose parent is a driftd, the supervisor.
	const findAgent = `ds=" $(pidof driftd) "; for p in $ds; do pp=$(cut -d' ' -f4 /proc/$p/stat); case "$ds" in *" $pp "*) echo $p;; esac; done`
	out, err := l.ExecOK(ctx, n, "sh", "-c", findAgent)
	if err != nil || strings.TrimSpace(out) == "" {
		procs, _ := l.ExecOK(ctx, n, "sh", "-c", `for p in $(pidof driftd); do echo "$p ppid $(cut -d' ' -f4 /proc/$p/stat): $(tr '\0' ' ' < /proc/$p/cmdline)"; done`)
		t.Fatalf("no driftd on node %d has a driftd parent (%q, %v): the agent runs unsupervised; driftd processes:\n%s", n, out, err, procs)
	}
	agent, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("the agent's pid on node %d: %q", n, out)
	}
	// Its log, read from the head through the API, holds its console
	// events and its own lines.
	logs, err := l.ExecOK(ctx, 1, "drift", "logs", name)
	if err != nil || !strings.Contains(logs, "drift: ready node="+name) || !strings.Contains(logs, "msg=\"api serving\"") {
		t.Errorf("drift logs %s on the head: %v; want its ready line and its API's log line, got %d bytes ending %q", name, err, len(logs), tail(logs, 300))
	}
	// Both driftd processes, the supervisor and the agent, are shielded.
	adj, err := l.ExecOK(ctx, n, "sh", "-c", "for p in $(pidof driftd); do cat /proc/$p/oom_score_adj; done")
	if f := strings.Fields(adj); err != nil || len(f) != 2 || f[0] != "-1000" || f[1] != "-1000" {
		t.Errorf("oom_score_adj of the two driftd processes = %q, %v; want -1000 for both", adj, err)
	}
	jobAdj, err := l.ExecOK(ctx, n, "drift", "run", "--node", name, "--", "cat", "/proc/self/oom_score_adj")
	if err != nil || strings.TrimSpace(jobAdj) != "0" {
		t.Errorf("a job's oom_score_adj = %q, %v; want 0, so that the OOM killer takes it before the agent", jobAdj, err)
	}

	// A checkpointed counter runs on the node, started from the head: the
	// agent's death kills it there (its output has nowhere to go), and its
	// home starts it again from its checkpoint once the node's new agent
	// answers, with every line once.
	type ran struct {
		res *labport.Result
		err error
	}
	counted := make(chan ran, 1)
	go func() {
		res, err := l.Exec(ctx, 1, "drift", "run", "--node", name, "--name", "survivor", "--checkpoint-every", "5s", "--", "sh", "-c",
			"i=1; while [ $i -le 300 ]; do echo $i; i=$((i+1)); sleep 0.1; done")
		counted <- ran{res, err}
	}()
	var survivor string
	for survivor == "" && ctx.Err() == nil {
		select {
		case r := <-counted:
			t.Fatalf("the counter on %s ended before its agent was killed: %+v, %v", name, r.res, r.err)
		case <-time.After(time.Second):
		}
		js, _ := l.Jobs(ctx, 1)
		for _, j := range js {
			if j.Name == "survivor" && j.Node == name && j.Checkpoint != nil && j.Exit == nil {
				survivor = j.ID
				t.Logf("counter %s checkpointed at %s", j.ID, j.Checkpoint.At.Format("15:04:05.0"))
			}
		}
	}

	// And a job homed on the node, running on worker 1: the agent's death
	// breaks its stream home; the agent started again no longer knows the
	// job, so worker 1 becomes its home, where drift attach finds it.
	homed, err := l.ExecOK(ctx, n, "drift", "run", "-d", "--node", names[1], "--name", "homed", "--", "sh", "-c",
		"i=1; while [ $i -le 300 ]; do echo $i; i=$((i+1)); sleep 0.1; done; exit 4")
	if err != nil {
		t.Fatalf("drift run -d on node %d: %v", n, err)
	}
	homed = strings.TrimSpace(homed)

	// The lab port is the agent's: the kill comes a second after the
	// exec has returned.
	if _, err := l.ExecOK(ctx, n, "sh", "-c", "setsid sh -c 'sleep 1; kill -9 "+strconv.Itoa(agent)+"' </dev/null >/dev/null 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	line, err := l.WaitFor(wctx, n, agentRestartRE)
	if err != nil {
		t.Fatalf("node %d's agent was killed and nothing said it would start again: %v", n, err)
	}
	t.Logf("node %d: %s", n, line)
	if _, err := l.WaitMembers(wctx, []int{1}, lab.AllAlive(names...)); err != nil {
		t.Fatalf("after its agent restarted, node %d is not back among the members: %v", n, err)
	}
	for {
		out, err := l.ExecOK(wctx, n, "sh", "-c", findAgent)
		if p, perr := strconv.Atoi(strings.TrimSpace(out)); err == nil && perr == nil && p != agent {
			t.Logf("node %d: the agent runs again as pid %d", n, p)
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("node %d's agent did not come back: %v %q", n, err, out)
		case <-time.After(2 * time.Second):
		}
	}
	select {
	case r := <-counted:
		want := ""
		for i := 1; i <= 300; i++ {
			want += fmt.Sprintln(i)
		}
		switch {
		case r.err != nil:
			t.Errorf("drift run of the counter whose agent was killed: %v", r.err)
		case r.res.ExitCode != 0 || string(r.res.Stdout) != want || !strings.Contains(string(r.res.Stderr), "recovered on"):
			t.Errorf("drift run of the counter whose agent was killed exited %d, stderr %q, stdout %s; want 1..300 once each, the recovery line and 0", r.res.ExitCode, r.res.Stderr, describeLines(string(r.res.Stdout)))
		default:
			t.Logf("the counter whose agent was killed printed 1..300 once each; stderr: %s", strings.TrimSpace(string(r.res.Stderr)))
		}
	case <-time.After(4 * time.Minute):
		t.Errorf("the counter %s still runs 4 minutes after its agent was killed", survivor)
	}
	att, err := l.Exec(ctx, 1, "drift", "attach", homed)
	switch {
	case err != nil:
		t.Errorf("drift attach %s, whose home's agent was killed: %v", homed, err)
	case att.ExitCode != 4 || !strings.HasSuffix(string(att.Stdout), "\n300\n") || !strings.Contains(string(att.Stderr), names[1]+" is its home now"):
		t.Errorf("drift attach %s, whose home's agent was killed: exit %d, stderr %q, stdout ends %q; want 4, the new home said, and the output to 300", homed, att.ExitCode, att.Stderr, tail(string(att.Stdout), 40))
	default:
		t.Logf("drift attach %s, whose home's agent was killed: exit 4, to line 300; %s", homed, strings.TrimSpace(string(att.Stderr)))
	}
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}
