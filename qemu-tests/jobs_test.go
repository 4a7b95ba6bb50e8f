package qemutests

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// testHops moves a counter worker 1 → worker 2 → head → worker 1 while
// its drift run, on worker 1, prints every line once.
func testHops(ctx context.Context, t *testing.T, c *cluster) {
	c.whole(ctx, t)
	l := c.l
	head, w1, w2 := c.names[0], c.names[1], c.names[2]
	began := time.Now()
	const lines = 300
	run := startExec(ctx, t, l, 2, "drift", "run", "--stay", "--node", w1, "--name", "hops",
		"--", "drift-workload", "counter", "-n", strconv.Itoa(lines), "-every", "100ms")
	job := waitNamed(ctx, t, l, 1, "hops", lab.Running(w1))
	t.Logf("job %s runs on %s (pid %d)", job.ID, job.Node, job.PID)
	for i, to := range []string{w2, head, w1} {
		time.Sleep(500 * time.Millisecond) // a few lines between moves
		res, err := l.Migrate(ctx, 1, job.ID, to)
		if err != nil {
			t.Fatalf("move %d of %s to %s: %v", i+1, job.ID, to, err)
		}
		t.Logf("move %d: %s → %s: freeze %s, total %s, %d bytes in %d pre-copy rounds",
			i+1, res.From, res.To, res.Freeze.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.Bytes, res.Rounds)
		if res.To != to || res.Job != job.ID {
			t.Errorf("drift migrate %s %s reported %+v", job.ID, to, res)
		}
		got, err := l.Job(ctx, 1, job.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Node != to || got.Moves != i+1 || got.State != "running" {
			t.Errorf("after move %d drift ps shows %s %s on %s with %d moves, want running on %s with %d",
				i+1, got.ID, got.State, got.Node, got.Moves, to, i+1)
		}
	}
	res := run.wait(ctx, t, 2*time.Minute)
	t.Logf("drift run exited %d after %s; stderr %q", res.ExitCode, since(began), res.Stderr)
	if res.ExitCode != 0 {
		t.Errorf("drift run exited %d, want 0 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if err := countedLines(string(res.Stdout), lines); err != nil {
		t.Errorf("drift run output: %v", err)
	}
}

// testHeldFile: a job holding a file under /tmp is refused by drift
// migrate and drift why names the file; it still runs where it was.
func testHeldFile(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	head, w1 := c.names[0], c.names[1]
	const held = "/tmp/drift-held"
	out, err := l.ExecOK(ctx, 2, "drift", "run", "-d", "--stay", "--node", w1, "--name", "holder",
		"--", "gosh", "-c", "drift-workload counter -n 0 -every 200ms > "+held)
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() { l.Exec(context.Background(), 1, "drift", "kill", "-s", "KILL", id) })
	waitJob(ctx, t, l, 1, id, lab.Running(w1))
	res, err := l.Exec(ctx, 1, "drift", "migrate", id, head)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("drift migrate %s %s: exit %d: %s", id, head, res.ExitCode, res.Stderr)
	if res.ExitCode == 0 || !strings.Contains(string(res.Stderr), held) {
		t.Errorf("drift migrate of a job holding %s exited %d with %q, want a refusal naming %s", held, res.ExitCode, res.Stderr, held)
	}
	why, err := l.ExecOK(ctx, 1, "drift", "why", id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("drift why %s:\n%s", id, why)
	if !strings.Contains(why, "cannot migrate") || !regexp.MustCompile(regexp.QuoteMeta(held)+` \(fd \d+\): a file outside`).MatchString(why) {
		t.Errorf("drift why %s does not name %s as what keeps it here:\n%s", id, held, why)
	}
	waitJob(ctx, t, l, 1, id, func(j api.JobInfo) bool { return j.State == "running" && j.Node == w1 && j.Moves == 0 })
	// It still runs: its file grows.
	n0 := lineCount(ctx, t, l, 2, held)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for n := n0; n <= n0; n = lineCount(wctx, t, l, 2, held) {
		select {
		case <-wctx.Done():
			t.Fatalf("%s on %s stopped growing at %d lines after the refusal", held, w1, n)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// testKill: drift kill from the head ends jobs on both workers, and
// drift run reports the signal in its exit status; a job killed while it
// moves ends too, where it moved to.
func testKill(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	w1, w2 := c.names[1], c.names[2]
	term := startExec(ctx, t, l, 2, "drift", "run", "--stay", "--node", w1, "--name", "term", "--", "sleep", "600")
	kill := startExec(ctx, t, l, 3, "drift", "run", "--stay", "--node", w2, "--name", "kill", "--", "drift-workload", "counter", "-n", "0")
	jt := waitNamed(ctx, t, l, 1, "term", lab.Running(w1))
	jk := waitNamed(ctx, t, l, 1, "kill", lab.Running(w2))
	if _, err := l.ExecOK(ctx, 1, "drift", "kill", jt.ID); err != nil {
		t.Error(err)
	}
	if _, err := l.ExecOK(ctx, 1, "drift", "kill", "-s", "KILL", jk.ID); err != nil {
		t.Error(err)
	}
	for _, k := range []struct {
		run  *bgExec
		job  api.JobInfo
		want int
	}{{term, jt, 143}, {kill, jk, 137}} {
		res := k.run.wait(ctx, t, time.Minute)
		if res.ExitCode != k.want {
			t.Errorf("drift run of %s (%s on %s) exited %d after drift kill, want %d (stderr %q)",
				k.job.ID, k.job.Command(), k.job.Node, res.ExitCode, k.want, res.Stderr)
		}
		waitJob(ctx, t, l, 1, k.job.ID, func(j api.JobInfo) bool { return j.State != "running" })
	}

	// A user's program, killed while it moves: the copy being left is
	// frozen, so the signal must follow the job to where it runs next.
	// It holds 48 MB, so that its move takes seconds.
	const prog = `import time
held = bytes(range(256)) * (48 * 4096)
print("holding", len(held), flush=True)
while True:
    time.sleep(1)
`
	moving := startExec(ctx, t, l, 2, "drift", "run", "--stay", "--node", w1, "--name", "moving", "--", "python3", "-c", prog)
	jm := waitNamed(ctx, t, l, 1, "moving", func(j api.JobInfo) bool { return lab.Running(w1)(j) && j.RSS >= 40<<20 })
	mig := startExec(ctx, t, l, 1, "drift", "migrate", jm.ID, w2)
	waitJob(ctx, t, l, 1, jm.ID, func(j api.JobInfo) bool { return j.State == api.JobMigrating })
	if _, err := l.ExecOK(ctx, 1, "drift", "kill", "-s", "KILL", jm.ID); err != nil {
		t.Error(err)
	}
	mres := mig.wait(ctx, t, 2*time.Minute)
	t.Logf("drift migrate, killed during the move: exit %d: %s%s", mres.ExitCode, mres.Stdout, mres.Stderr)
	res := moving.wait(ctx, t, time.Minute)
	if res.ExitCode != 137 {
		t.Errorf("drift run of a job killed with SIGKILL while it moved exited %d, want 137 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if !strings.HasPrefix(string(res.Stdout), "holding") {
		t.Errorf("the job killed while it moved printed %q, want its first line", res.Stdout)
	}
	// The signal waits for the move: the job gets it where it went.
	if mres.ExitCode != 0 {
		t.Errorf("drift migrate of a job killed while it moved: exit %d, want the move done and the signal delivered after it", mres.ExitCode)
	}
	end := waitJob(ctx, t, l, 1, jm.ID, func(j api.JobInfo) bool { return j.State == api.JobExited })
	t.Logf("killed during its move: ended on %s after %d moves", end.Node, end.Moves)
	if end.Node != w2 {
		t.Errorf("a job killed while it moved to %s ended on %s", w2, end.Node)
	}
}

// testTargetDies powers worker 2 off while two jobs migrate to it from
// worker 1: both migrations fail, naming the step, and the jobs run on
// worker 1 still, the counter's output whole. Worker 2 stays off.
func testTargetDies(ctx context.Context, t *testing.T, c *cluster) {
	c.whole(ctx, t)
	l, img := c.l, c.img
	w1, w2 := c.names[1], c.names[2]
	// Two jobs on worker 1 move to worker 2, which is powered off
	// while both migrations are in pre-copy: a 48 MB toucher, whose
	// pre-copy takes seconds, and a counter whose output must go on
	// (holding 16 MB, so that it pre-copies too).
	out, err := l.ExecOK(ctx, 2, "drift", "run", "-d", "--stay", "--node", w1, "--name", "big",
		"--", "drift-workload", "touch", "-rss", "48M", "-dirty", "1M")
	if err != nil {
		t.Fatal(err)
	}
	// Resident before it moves, so that its pre-copy takes seconds (a
	// job under 8 MiB skips pre-copy).
	big := waitJob(ctx, t, l, 1, strings.TrimSpace(out), func(j api.JobInfo) bool { return lab.Running(w1)(j) && j.RSS >= 40<<20 })
	t.Cleanup(func() { l.Exec(context.Background(), 1, "drift", "kill", big.ID) })
	const lines = 400
	run := startExec(ctx, t, l, 2, "drift", "run", "--stay", "--node", w1, "--name", "survivor",
		"--", "drift-workload", "counter", "-n", strconv.Itoa(lines), "-every", "100ms", "-rss", "16M")
	counter := waitNamed(ctx, t, l, 1, "survivor", lab.Running(w1))

	// Both migrations start together; the target is powered off once
	// the counter's first pre-copy round is sent (its second round
	// and its freeze follow), while the big job's first round, many
	// times larger, is still on its way. The counter's migration
	// runs from the host, as a user's would from a workstation.
	drift, key, headAddr := buildDrift(t), filepath.Join(img.Dir, imagebuild.KeyName), readyAddr(t, l, 1)
	migBig := startExec(ctx, t, l, 1, "drift", "migrate", big.ID, w2)
	migCounter := startHost(ctx, t, l, drift, "--cluster", headAddr, "--key-file", key, "migrate", counter.ID, w2)
	if _, err := l.WaitFor(ctx, 2, preDumpRE(counter.PID, 1)); err != nil {
		t.Fatalf("migration of %s never finished its first pre-copy round: %v", counter.ID, err)
	}
	if err := l.StopNode(ctx, 3); err != nil {
		t.Fatalf("power off %s: %v", w2, err)
	}
	off := time.Now()
	t.Logf("%s powered off during both migrations", w2)
	lctx, lcancel := context.WithTimeout(ctx, 2*time.Second)
	if line, err := l.WaitFor(lctx, 2, preDumpRE(big.PID, 1)); err == nil {
		t.Logf("the big job's first pre-copy round had been sent: %s", line)
	} else {
		t.Logf("the big job was in its first pre-copy round")
	}
	lcancel()

	// Both migrations fail soon after the power-off: the agents see
	// the target dead within seconds, so failDeadline is generous. A
	// migration still hanging then is cancelled (its drift migrate
	// is ended), which resumes the job on the source.
	step := regexp.MustCompile(`pre-dump round \d+|send (pre-\d+|final)|final dump|restore on|the target's CPU`)
	for _, m := range []struct {
		job api.JobInfo
		mig *bgExec
	}{{big, migBig}, {counter, migCounter}} {
		res, ok := m.mig.waitUntil(off.Add(failDeadline))
		if !ok {
			t.Errorf("drift migrate %s %s had not returned %s after %s was powered off (the agents list it dead within seconds): a migration must fail, and say so, when its target dies",
				m.job.ID, w2, failDeadline, w2)
			continue
		}
		t.Logf("drift migrate %s %s returned %s after the power-off: exit %d: %s", m.job.ID, w2, since(off), res.ExitCode, res.Stderr)
		if res.ExitCode == 0 || !step.Match(res.Stderr) {
			t.Errorf("drift migrate %s to a node powered off on the way exited %d with %q, want a failure naming the step", m.job.ID, res.ExitCode, res.Stderr)
		}
	}
	j := waitJob(ctx, t, l, 1, big.ID, func(j api.JobInfo) bool { return j.State != "migrating" })
	if j.State != "running" || j.Node != w1 || j.Moves != 0 {
		t.Errorf("after the failed migration drift ps shows %s %s on %s with %d moves, want it running on %s, never moved", j.ID, j.State, j.Node, j.Moves, w1)
	}
	// The counter's output went on: every line once, in order.
	res := run.wait(ctx, t, 2*time.Minute)
	if res.ExitCode != 0 {
		t.Errorf("drift run of the counter exited %d, want 0 (stderr %q)", res.ExitCode, res.Stderr)
	}
	if err := countedLines(string(res.Stdout), lines); err != nil {
		t.Errorf("drift run output of the counter whose migration failed: %v", err)
	}
	if j, err := l.Job(ctx, 1, counter.ID); err != nil || j.Node != w1 || j.Moves != 0 {
		t.Errorf("the counter is listed as %+v (%v), want it on %s, never moved", j, err, w1)
	}
}

// testTargetBack boots worker 2, powered off by testTargetDies, again:
// it rejoins and mounts /cluster, for the steps after.
func testTargetBack(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	if err := l.StartNode(ctx, 3); err != nil {
		t.Fatalf("boot node 3 again: %v", err)
	}
	t.Logf("node 3 qemu command line: %s", l.CommandLine(3))
	r, err := l.WaitReadyNode(ctx, 3)
	if err != nil {
		t.Fatalf("node 3 booted again: %v", err)
	}
	if r.Name != c.names[2] {
		t.Errorf("node 3 came back as %s, want %s (same MAC)", r.Name, c.names[2])
	}
	c.whole(ctx, t)
}

// clusterMountedRE is a node's event for its shared storage mounted.
var clusterMountedRE = regexp.MustCompile(`drift: storage mounted=/cluster `)

// failDeadline is how long after its target is powered off a migration
// may take to fail.
const failDeadline = 90 * time.Second

// preDumpRE matches the source's log line for a finished pre-copy round
// of the job whose init is pid.
func preDumpRE(pid, round int) *regexp.Regexp {
	return regexp.MustCompile(fmt.Sprintf(`msg=pre-dump pid=%d round=%d `, pid, round))
}

// readyAddr is node n's address from its ready line.
func readyAddr(t *testing.T, l *lab.Lab, n int) string {
	t.Helper()
	r, ok := l.Ready(n)
	if !ok {
		t.Fatalf("node %d has no ready line", n)
	}
	return r.Addr
}

// nodeAddr is node n's address now: its lease, or its link-local
// address while it has none (a worker ready before the head's DHCP
// server answered holds a lease soon after, and drops its link-local
// address, the one in its ready line).
func nodeAddr(ctx context.Context, t *testing.T, l *lab.Lab, n int) string {
	t.Helper()
	out := execOK(ctx, t, l, n, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
	addr := ""
	for _, f := range strings.Fields(string(out.Stdout)) {
		if p, err := netip.ParsePrefix(f); err == nil && (addr == "" || !p.Addr().IsLinkLocalUnicast()) {
			addr = p.Addr().String()
		}
	}
	if addr == "" {
		t.Fatalf("node %d has no IPv4 address: %s", n, out.Stdout)
	}
	return addr
}

// countedLines checks that out is exactly the lines 1 to n, in order,
// and says where it is not.
func countedLines(out string, n int) error {
	got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	var problems []string
	want := 1
	for i, line := range got {
		v, err := strconv.Atoi(line)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("line %d is %q", i+1, line))
		case v < want:
			problems = append(problems, fmt.Sprintf("line %d repeats %d", i+1, v))
		case v > want:
			problems = append(problems, fmt.Sprintf("line %d: %d to %d missing", i+1, want, v-1))
			want = v + 1
		default:
			want++
		}
		if len(problems) > 10 {
			break
		}
	}
	if want != n+1 {
		problems = append(problems, fmt.Sprintf("ends at %d, want %d", want-1, n))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d lines, want 1..%d: %s", len(got), n, strings.Join(problems, "; "))
	}
	return nil
}

// lineCount is the number of lines in path on node n.
func lineCount(ctx context.Context, t *testing.T, l *lab.Lab, n int, path string) int {
	t.Helper()
	out, err := l.ExecOK(ctx, n, "wc", "-l", path)
	if err != nil {
		if ctx.Err() != nil {
			return -1
		}
		t.Fatal(err)
	}
	f := strings.Fields(out)
	if len(f) == 0 {
		t.Fatalf("node %d: wc -l %s printed %q", n, path, out)
	}
	c, err := strconv.Atoi(f[0])
	if err != nil {
		t.Fatalf("node %d: wc -l %s printed %q", n, path, out)
	}
	return c
}

// waitJob waits until drift ps on node n lists job id and ok holds, with a
// minute's limit.
func waitJob(ctx context.Context, t *testing.T, l *lab.Lab, n int, id string, ok func(api.JobInfo) bool) api.JobInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	j, err := l.WaitJob(ctx, n, id, ok)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// waitNamed waits until drift ps on node n lists a job named name for
// which ok holds, with a minute's limit. Names are unique in TestCluster.
func waitNamed(ctx context.Context, t *testing.T, l *lab.Lab, n int, name string, ok func(api.JobInfo) bool) api.JobInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		js, err := l.Jobs(ctx, n)
		if err != nil && ctx.Err() == nil {
			t.Fatal(err)
		}
		for _, j := range js {
			if j.Name == name && ok(j) {
				return j
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no job named %q as wanted within a minute; drift ps on node %d lists %+v", name, n, js)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// bgExec is a command running on a node (or on the host) in the
// background; the test waits for it, or its cleanup cancels it and waits.
type bgExec struct {
	argv   []string
	cancel context.CancelFunc
	done   chan struct{}
	res    *labport.Result
	err    error
}

// startExec runs argv on node n in the background; its node's lab port is
// busy until it ends.
func startExec(ctx context.Context, t *testing.T, l *lab.Lab, n int, argv ...string) *bgExec {
	t.Helper()
	return startBg(ctx, t, argv, func(ctx context.Context) (*labport.Result, error) { return l.Exec(ctx, n, argv...) })
}

// startHost runs a host command in the lab's network in the background.
func startHost(ctx context.Context, t *testing.T, l *lab.Lab, name string, args ...string) *bgExec {
	t.Helper()
	return startBg(ctx, t, append([]string{name}, args...), func(ctx context.Context) (*labport.Result, error) {
		cmd := l.Command(ctx, name, args...)
		var stdout, stderr strings.Builder
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); cmd.ProcessState == nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		return &labport.Result{Stdout: []byte(stdout.String()), Stderr: []byte(stderr.String()), ExitCode: cmd.ProcessState.ExitCode()}, nil
	})
}

func startBg(ctx context.Context, t *testing.T, argv []string, run func(context.Context) (*labport.Result, error)) *bgExec {
	t.Helper()
	t.Logf("in the background: %q", argv)
	ctx, cancel := context.WithCancel(ctx)
	b := &bgExec{argv: argv, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.res, b.err = run(ctx)
	}()
	t.Cleanup(func() { cancel(); <-b.done })
	return b
}

// waitUntil waits until deadline for the command to end and returns what
// it did; if it has not ended by then, it cancels it and returns false.
// An Exec error (not an exit status) is reported as an exit of -1 with
// the error as stderr.
func (b *bgExec) waitUntil(deadline time.Time) (*labport.Result, bool) {
	select {
	case <-b.done:
	case <-time.After(time.Until(deadline)):
		b.cancel()
		<-b.done
		return nil, false
	}
	if b.err != nil {
		return &labport.Result{ExitCode: -1, Stderr: []byte(b.err.Error())}, true
	}
	return b.res, true
}

// wait waits at most limit for the command to end and returns what it did.
func (b *bgExec) wait(ctx context.Context, t *testing.T, limit time.Duration) *labport.Result {
	t.Helper()
	select {
	case <-b.done:
	case <-time.After(limit):
		b.cancel()
		<-b.done
		t.Fatalf("%q did not end within %s", b.argv, limit)
	case <-ctx.Done():
		b.cancel()
		<-b.done
		t.Fatalf("%q: %v", b.argv, ctx.Err())
	}
	if b.err != nil {
		t.Fatalf("%q: %v", b.argv, b.err)
	}
	return b.res
}
