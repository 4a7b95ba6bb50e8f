package qemutests

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// TestCluster boots one 3-node lab (a head and two workers, from the
// kernel and initramfs) and runs on it, in order, every scenario that
// needs nothing but such a lab: the nodes and their lab ports;
// membership, leases and the cluster seen from the host; shared storage;
// jobs and migrations; the user's own programs; package migrate between
// two of the VMs; balancing; nodes with another key. Last come the
// scenarios that power nodes off or change the cluster for good: a worker
// powered off and back, a migration whose target dies, the head rebooted
// onto a DRIFT-DATA disk. Between steps no job may be left running
// (settle). One lab instead of one per scenario: on the 2-core machines
// the tests run on, every boot of three TCG guests costs minutes.
func TestCluster(t *testing.T) {
	img := image(t)
	t.Parallel()
	l := startLab(t, lab.Config{Image: img, Nodes: 3, Boot: lab.BootKernel})
	ctx := waitContext(t, 50*time.Minute)
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	start := time.Now()
	if err := l.WaitReady(bctx, func(r lab.Ready) { t.Logf("ready after %s: node %d: %s", since(start), r.Node, r.Line) }); err != nil {
		t.Fatalf("wait for 3 nodes: %v", err)
	}
	c := &cluster{l: l, img: img, lastReady: time.Now(), names: readyNames(t, l)}
	// The moment drift-lab up would return: a job that writes under
	// /cluster must never see the bare mount point (testAtOnce).
	c.atOnce = startExec(ctx, t, l, 2, "drift", "run", "--name", "at-once", "--", "sh", "-c", "echo written at once >/cluster/at-once.txt")
	// The steps that failed, named again last: a long log is often read
	// from its end.
	var failed []string
	t.Cleanup(func() {
		if len(failed) > 0 {
			t.Logf("steps failed: %q", failed)
		}
	})

	for _, s := range []struct {
		name  string
		limit time.Duration // a hang guard, not a goal
		run   func(context.Context, *testing.T, *cluster)
	}{
		// First, as its deadline counts from the last ready line.
		{"workers leased by the head, 3 alive everywhere", 3 * time.Minute, testLeases},
		{"every node answers through its lab port", 5 * time.Minute, testLabPorts},
		{"the cluster from the host", 5 * time.Minute, testFromHost},

		{"every node mounts the head's export", 5 * time.Minute, testMounted},
		{"a job started the moment the lab was up wrote to /cluster", 3 * time.Minute, testAtOnce},
		{"tmpfs says its data is lost", 3 * time.Minute, testTmpfsWarning},
		{"file from worker 2 reads back everywhere", 5 * time.Minute, testReadBack},
		{"100 MB checksum matches on all three", 20 * time.Minute, testBigChecksum},
		{"three nodes append at once and lose no line", 5 * time.Minute, testAppend},

		{"counter moved worker 1 → worker 2 → head → worker 1", 10 * time.Minute, testHops},
		{"a file open under /tmp keeps a job from moving", 5 * time.Minute, testHeldFile},
		{"drift kill from the head, and during a move", 5 * time.Minute, testKill},
		{"a stopped terminal stalls neither drift ps nor a move", 5 * time.Minute, testStalledTerminal},
		{"stdin not yet read, and its end, follow a job that moves", 5 * time.Minute, testStdinAcrossMove},
		{"programs from a workstation", 30 * time.Minute, testUserPrograms},
		{"package migrate between two VMs", 10 * time.Minute, testMigratePackage},
		{"six jobs spread and drain", 10 * time.Minute, testBalance},
		{"prometheus counts a migration, drift events shows it", 10 * time.Minute, testMetricsAndEvents},
		{"drift top shows the nodes, a job and its migration", 10 * time.Minute, testTop},
		{"drift ui shows the nodes and a job, and moves it", 10 * time.Minute, testUI},
		{"a sweep of a host program: every output right, no node over its cores + 1", 15 * time.Minute, testArraySweep},
		{"a sweep of 150 MB tasks on 512 MB nodes: no OOM kill", 10 * time.Minute, testArrayMemory},
		{"a sweep of a short shell script from the host: ends at once, names its failures", 5 * time.Minute, testArrayShortTasks},
		{"a sweep of uneven tasks: the one waiting behind a long task runs on an idle node", 5 * time.Minute, testArrayUneven},

		// These boot a fourth and a fifth node, stopped again at the end
		// of their step.
		{"a node with another key is refused", 10 * time.Minute, testForeignNode},
		{"a node with another key cannot mount the export", 10 * time.Minute, testForeignMount},

		// Destructive: an agent killed; nodes powered off; the head's
		// storage changed.
		{"an agent that dies is started again; only jobs are OOM-killable", 5 * time.Minute, testAgentRestart},
		{"a sweep's submitting node powered off halfway: drift wait sees every task done", 15 * time.Minute, testArraySubmitterDies},
		{"a worker powered off is dead, then rejoins", 12 * time.Minute, testWorkerRejoins},
		{"the power button drains a worker, then powers it off", 15 * time.Minute, testPowerButton},
		{"the target dies during a migration", 15 * time.Minute, testTargetDies},
		{"the worker powered off during a migration boots again", 10 * time.Minute, testTargetBack},
		{"head reboots onto DRIFT-DATA; workers remount by themselves", 20 * time.Minute, testHeadReboot},
	} {
		sctx, cancel := context.WithTimeout(ctx, s.limit)
		if !t.Run(s.name, func(t *testing.T) { s.run(sctx, t, c) }) {
			failed = append(failed, s.name)
		}
		cancel()
		c.settle(ctx, t, s.name)
	}
}

// cluster is TestCluster's lab and what its steps know about it.
type cluster struct {
	l   *lab.Lab
	img lab.Image
	// names are the nodes' names from their ready lines: the head,
	// worker 1 (node 2) and worker 2 (node 3).
	names     []string
	lastReady time.Time // when the last of the three was first ready
	atOnce    *bgExec   // a job started the moment the three were ready
}

// whole waits until every node of the three lists all three alive and
// has mounted /cluster, as after the first boot: steps that come after a
// node was powered off and back start with it.
func (c *cluster) whole(ctx context.Context, t *testing.T) {
	t.Helper()
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	if _, err := c.l.WaitMembers(wctx, []int{1, 2, 3}, lab.AllAlive(c.names...)); err != nil {
		t.Fatalf("every node lists %v alive: %v", c.names, err)
	}
	for n := 1; n <= 3; n++ {
		if _, err := c.l.WaitFor(wctx, n, clusterMountedRE); err != nil {
			t.Fatalf("node %d has not mounted /cluster: %v", n, err)
		}
	}
}

// settle waits until no job of the cluster runs, so that the next step
// starts on idle nodes with only its own jobs running. A job still
// running after a minute is killed and named: the step that started it
// should have ended it.
func (c *cluster) settle(ctx context.Context, t *testing.T, after string) {
	t.Helper()
	if !c.l.Running(1) {
		return
	}
	busy := func() []string {
		var ids []string
		js, err := c.l.Jobs(ctx, 1)
		if err != nil {
			t.Logf("after %q: drift ps: %v", after, err)
			return nil
		}
		for _, j := range js {
			if j.State != "exited" {
				ids = append(ids, j.ID)
			}
		}
		return ids
	}
	wait := func(d time.Duration) []string {
		until := time.Now().Add(d)
		for {
			ids := busy()
			if len(ids) == 0 || time.Now().After(until) || ctx.Err() != nil {
				return ids
			}
			time.Sleep(time.Second)
		}
	}
	ids := wait(time.Minute)
	if len(ids) == 0 {
		return
	}
	t.Logf("after %q jobs %v still run a minute later: killing them", after, ids)
	c.explain(ctx, t, ids)
	for _, id := range ids {
		c.l.Exec(ctx, 1, "drift", "kill", "-s", "KILL", id)
	}
	if ids := wait(time.Minute); len(ids) > 0 {
		t.Errorf("after %q jobs %v still run after drift kill -s KILL", after, ids)
	}
}

// explain logs what the cluster says of jobs that should have ended:
// their records in drift ps, and each node's log lines that name them.
func (c *cluster) explain(ctx context.Context, t *testing.T, ids []string) {
	t.Helper()
	js, err := c.l.Jobs(ctx, 1)
	if err != nil {
		t.Logf("drift ps: %v", err)
	}
	for _, j := range js {
		if slices.Contains(ids, j.ID) {
			b, _ := json.Marshal(j)
			t.Logf("drift ps: %s", b)
		}
	}
	for n := 1; n <= 3; n++ {
		if !c.l.Running(n) {
			continue
		}
		out, err := c.l.ExecOK(ctx, 1, "drift", "logs", "-n", "2000", c.names[n-1])
		if err != nil {
			t.Logf("drift logs %s: %v", c.names[n-1], err)
			continue
		}
		for _, line := range strings.Split(out, "\n") {
			for _, id := range ids {
				if strings.Contains(line, id) {
					t.Logf("%s: %s", c.names[n-1], line)
					break
				}
			}
		}
	}
}

// testLabPorts checks every ready line and drives each node through its
// lab port, and the nodes reach each other over the lab's bridge.
func testLabPorts(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	names := map[string]int{}
	for n := 1; n <= 3; n++ {
		r, _ := l.Ready(n)
		role := "worker"
		if n == 1 {
			role = "head"
		}
		checkReady(t, l, c.img, r, role)
		if other, dup := names[r.Name]; dup {
			t.Errorf("nodes %d and %d are both named %q", other, n, r.Name)
		}
		names[r.Name] = n

		// A node is reachable by its name as well as its number.
		if got, err := l.Resolve(r.Name); err != nil || got != n {
			t.Errorf("Resolve(%q) = %d, %v; want %d", r.Name, got, err, n)
		}
		for _, argv := range [][]string{{"hostname"}, {"cat", "/proc/sys/kernel/hostname"}} {
			res := execOK(ctx, t, l, n, argv...)
			if got := strings.TrimSpace(string(res.Stdout)); got != r.Name {
				t.Errorf("node %d: %q printed %q, want the ready line's name %q", n, argv, got, r.Name)
			}
		}
		res, err := labport.Exec(ctx, l.LabSock(n), labport.Request{Argv: []string{"cat", "/nonexistent/drift-lab-test"}})
		if err != nil {
			t.Fatalf("node %d: exec of a failing command: %v", n, err)
		}
		if res.ExitCode == 0 {
			t.Errorf("node %d: cat of a missing file exited 0, want a failure status (stderr %q)", n, res.Stderr)
		}
	}

	// Once nodes have addresses, they reach each other over the lab's bridge.
	head, _ := l.Ready(1)
	addrs := map[string]int{}
	for n := 1; n <= 3; n++ {
		r, _ := l.Ready(n)
		if r.Addr == "none" {
			continue
		}
		if other, dup := addrs[r.Addr]; dup {
			t.Errorf("nodes %d and %d both have address %s", other, n, r.Addr)
		}
		addrs[r.Addr] = n
		if n != 1 && head.Addr != "none" {
			execOK(ctx, t, l, n, "ping", "-c", "1", head.Addr)
		}
	}
}

// execOK runs argv on node n and fails the test unless it exits 0.
func execOK(ctx context.Context, t *testing.T, l *lab.Lab, n int, argv ...string) *labport.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	res, err := labport.Exec(ctx, l.LabSock(n), labport.Request{Argv: argv})
	if err != nil {
		t.Fatalf("node %d: exec %q: %v", n, argv, err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("node %d: exec %q exited %d: %s", n, argv, res.ExitCode, res.Stderr)
	}
	return res
}

// testAtOnce: the job started as the lab came up (TestCluster) ended 0,
// and every node reads the file it wrote under /cluster.
func testAtOnce(ctx context.Context, t *testing.T, c *cluster) {
	res, ok := c.atOnce.waitUntil(time.Now().Add(2 * time.Minute))
	switch {
	case !ok:
		t.Fatal("the job started as the lab came up still runs after 2 minutes")
	case res.ExitCode != 0:
		t.Fatalf("the job started as the lab came up exited %d: %s", res.ExitCode, res.Stderr)
	}
	for n := 1; n <= 3; n++ {
		if got, err := c.l.ExecOK(ctx, n, "cat", "/cluster/at-once.txt"); err != nil || got != "written at once\n" {
			t.Errorf("node %d reads %q, %v from the file the job wrote as the lab came up; want %q", n, got, err, "written at once\n")
		}
	}
	t.Logf("the job started as the lab came up wrote /cluster/at-once.txt; all 3 nodes read it")
	c.l.Exec(ctx, 1, "rm", "-f", "/cluster/at-once.txt")
}
