package qemutests

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Deadlines the networking issue sets as behaviour (not speed) goals.
const (
	convergeDeadline = 30 * time.Second // every node lists all members, after the last ready line
	deadDeadline     = 15 * time.Second // a powered-off node is shown dead
	// foreignWatch is how long a node with another key is watched never
	// to appear in anyone's list.
	foreignWatch = 20 * time.Second
)

// testLeases: the head is at its DHCP server's address, the workers
// hold its leases, and every node lists all three alive within
// convergeDeadline of the last ready line.
func testLeases(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	head, _ := l.Ready(1)
	if head.Addr != "10.77.0.1" {
		t.Errorf("head ready at %s, want 10.77.0.1 (its DHCP server's address)", head.Addr)
	}
	lan := netip.MustParsePrefix("10.77.0.0/24")
	leased := func(a netip.Addr) bool { return lan.Contains(a) && a != netip.MustParseAddr(lab.HostAddr) }
	for _, n := range []int{2, 3} {
		r, _ := l.Ready(n)
		a, err := netip.ParseAddr(r.Addr)
		if err == nil && leased(a) {
			out := execOK(ctx, t, l, n, "ip", "-4", "addr", "show")
			if !strings.Contains(string(out.Stdout), r.Addr+"/24") {
				t.Errorf("worker %d: ip addr does not show %s/24:\n%s", n, r.Addr, out.Stdout)
			}
			continue
		}
		// A worker that came up before the head's DHCP server answered
		// is ready on a link-local address and goes on asking: it holds
		// a lease soon after.
		if err != nil || !a.IsLinkLocalUnicast() {
			t.Errorf("worker %d ready at %q, want a lease from the head in %s (not the bridge's %s), or a link-local address until then", n, r.Addr, lan, lab.HostAddr)
			continue
		}
		start := time.Now()
		var got string
		for got == "" && time.Since(start) < time.Minute {
			out := execOK(ctx, t, l, n, "ip", "-4", "-o", "addr", "show", "dev", "eth0")
			for _, f := range strings.Fields(string(out.Stdout)) {
				if p, err := netip.ParsePrefix(f); err == nil && leased(p.Addr()) {
					got = p.Addr().String()
				}
			}
			if got == "" {
				time.Sleep(time.Second)
			}
		}
		if got == "" {
			t.Errorf("worker %d, ready on link-local %s before the head's DHCP server answered, holds no lease from it a minute later", n, r.Addr)
			continue
		}
		t.Logf("worker %d was ready on link-local %s (the head's DHCP server was not up yet); its lease %s held within %s of this check", n, r.Addr, got, since(start))
	}
	wctx, cancel := context.WithDeadline(ctx, c.lastReady.Add(convergeDeadline))
	defer cancel()
	if _, err := l.WaitMembers(wctx, []int{1, 2, 3}, lab.AllAlive(c.names...)); err != nil {
		t.Fatalf("every node lists %v alive within %s of the last ready line: %v", c.names, convergeDeadline, err)
	}
	t.Logf("all 3 nodes list 3 alive members %s after the last ready line", since(c.lastReady))
}

// testFromHost: the CLI on the host with the key lists the cluster; with
// a wrong key it is refused and says why; garbage on the API port leaves
// the agent answering.
func testFromHost(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	drift := buildDrift(t)
	key := filepath.Join(c.img.Dir, imagebuild.KeyName)
	nodes, err := hostNodes(ctx, l, drift, "10.77.0.1", key)
	if err != nil {
		t.Fatalf("drift --cluster 10.77.0.1 --key-file %s nodes: %v", key, err)
	}
	if got := lab.MemberStates(nodes); !lab.AllAlive(c.names...)(0, got) {
		t.Errorf("host lists %v, want %v alive", got, c.names)
	}
	wrong := filepath.Join(t.TempDir(), "wrong.key")
	if err := os.WriteFile(wrong, []byte(randomKeyHex(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = hostNodes(ctx, l, drift, "10.77.0.1", wrong)
	if err == nil || !strings.Contains(err.Error(), "refused this key: check --key-file") {
		t.Errorf("drift with a wrong key file = %v, want the CLI's refusal naming --key-file", err)
	}
	// Garbage on the API port, raw and dressed as a TLS ClientHello,
	// from several connections: the agent must still answer after.
	for i, script := range []string{
		"head -c 65536 /dev/urandom > /dev/tcp/10.77.0.1/7947",
		"{ printf '\\x16\\x03\\x01\\x02\\x00'; head -c 600 /dev/urandom; } > /dev/tcp/10.77.0.1/7947",
		"printf 'GET /v1/nodes HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' > /dev/tcp/10.77.0.1/7947",
		"for i in 1 2 3 4 5 6 7 8; do head -c 3000 /dev/urandom > /dev/tcp/10.77.0.1/7947 & done; wait",
	} {
		cmd := l.Command(ctx, "bash", "-c", script)
		t.Logf("garbage %d: %s", i, cmd)
		cmd.Run() // the agent may reset the connection: not an error here
	}
	if _, err := hostNodes(ctx, l, drift, "10.77.0.1", key); err != nil {
		t.Errorf("drift nodes after garbage on the API port: %v", err)
	}
	execOK(ctx, t, l, 1, "drift", "status")
	testProfile(ctx, t, l, drift, key, c.names[1])
}

// testProfile takes a CPU profile of a worker's agent from the host,
// through the head, and checks that it is one: a gzip'd protobuf that
// maps the agent's program.
func testProfile(ctx context.Context, t *testing.T, l *lab.Lab, drift, key, node string) {
	out := filepath.Join(t.TempDir(), "w.pprof")
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := l.Command(pctx, drift, "--cluster", "10.77.0.1", "--key-file", key, "profile", "-seconds", "2", "-o", out, node)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("%s: %v: %s", cmd, err, b)
		return
	}
	f, err := os.Open(out)
	if err != nil {
		t.Errorf("drift profile wrote no file: %v", err)
		return
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Errorf("drift profile: %s is not gzip'd, as pprof's format is: %v", out, err)
		return
	}
	b, err := io.ReadAll(zr)
	// An idle agent may give no sample in 2 s, but a profile always maps
	// the program it profiled.
	if err != nil || !bytes.Contains(b, []byte("driftd")) {
		t.Errorf("drift profile: the profile (%d bytes, %v) does not map the agent's program, driftd", len(b), err)
	}
	cmd = l.Command(pctx, drift, "--cluster", "10.77.0.1", "--key-file", key, "profile", "-seconds", "500", node)
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "-seconds from 1 to 120") {
		t.Errorf("drift profile -seconds 500 = %v: %s; want a usage error naming the range", err, b)
	}
}

// testForeignNode boots a node with another key that names the members
// as seeds: every member logs its refusal, nobody lists it, and it lists
// only itself. It is stopped at the end.
func testForeignNode(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	n, r := c.addForeign(ctx, t, "drift.join=10.77.0.1:7946,10.77.0.2:7946,10.77.0.3:7946")
	t.Logf("foreign node ready: %s", r.Line)
	refused := regexp.MustCompile(`refused packet from ` + regexp.QuoteMeta(r.Addr) + `: `)
	// Every member logs the refusal; wait for that in the background.
	wctx, cancel := context.WithCancel(ctx)
	lines, errs := make([]string, 4), make([]error, 4)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for m := 1; m <= 3; m++ {
		wg.Go(func() {
			lines[m], errs[m] = l.WaitFor(wctx, m, refused)
		})
	}
	// Meanwhile, and for foreignWatch after its ready line, nobody
	// lists it, and it lists only itself.
	for until := time.Now().Add(foreignWatch); time.Now().Before(until); {
		for m := 1; m <= 3; m++ {
			ms, err := l.Members(ctx, m)
			if err != nil {
				t.Fatal(err)
			}
			if st, ok := lab.MemberStates(ms)[r.Name]; ok {
				t.Fatalf("node %d lists the node with another key (%s, %s)", m, r.Name, st)
			}
		}
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
	ms, err := l.Members(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	if got := lab.MemberStates(ms); len(got) != 1 {
		t.Errorf("the node with another key lists %v, want only itself", got)
	}
	wg.Wait()
	for m := 1; m <= 3; m++ {
		if errs[m] != nil {
			t.Errorf("node %d never logged that it refused %s: %v", m, r.Addr, errs[m])
		} else {
			t.Logf("node %d: %s", m, lines[m])
		}
	}
	if err := l.StopNode(ctx, n); err != nil {
		t.Errorf("stop node %d: %v", n, err)
	}
}

// testWorkerRejoins powers worker 2 off: the others show it dead within
// deadDeadline; booted again, it comes back under its name and alive
// everywhere.
func testWorkerRejoins(ctx context.Context, t *testing.T, c *cluster) {
	l, names := c.l, c.names
	gone := names[2]

	// A job that runs on the node, started from worker 1 and attached:
	// it stays there and cannot be checkpointed (it holds a file under
	// /tmp open), so once the node is declared dead its drift run ends,
	// with 255 and why. Without --stay the balancer may move it in the
	// second before its shell opens the file, as the node runs four jobs.
	type ran struct {
		res *labport.Result
		err error
		at  time.Time
	}
	done := make(chan ran, 1)
	go func() {
		res, err := l.Exec(ctx, 2, "drift", "run", "--node", gone, "--name", "held", "--stay", "--checkpoint-every", "5s", "--", "sh", "-c",
			"exec 3>/tmp/drift-held.$$; i=0; while :; do i=$((i+1)); echo $i; sleep 0.2; done")
		done <- ran{res, err, time.Now()}
	}()
	// And a counter, 1..1000 at 10 lines a second, checkpointed every 5 s:
	// once the node is dead it starts again elsewhere from its newest
	// checkpoint, and its drift run shows every line once.
	counted := make(chan ran, 1)
	go func() {
		res, err := l.Exec(ctx, 2, "drift", "run", "--node", gone, "--name", "counter", "--stay", "--checkpoint-every", "5s", "--", "sh", "-c",
			"i=1; while [ $i -le 1000 ]; do echo $i; i=$((i+1)); sleep 0.1; done")
		counted <- ran{res, err, time.Now()}
	}()
	// And a job homed on the node, running on worker 1: once its home is
	// dead, worker 1 becomes its home, and a terminal on the head follows
	// it to its end.
	orphan, err := l.ExecOK(ctx, 3, "drift", "run", "-d", "--node", names[1], "--name", "orphan", "--stay", "--", "sh", "-c",
		"i=1; while [ $i -le 1000 ]; do echo $i; i=$((i+1)); sleep 0.1; done; exit 3")
	if err != nil {
		t.Fatalf("drift run -d on node 3: %v", err)
	}
	orphan = strings.TrimSpace(orphan)
	// And one homed on the node and running there, checkpointed: once the
	// node is dead, another claims it from its record on /cluster and
	// starts it again from its checkpoint.
	lone, err := l.ExecOK(ctx, 3, "drift", "run", "-d", "--node", gone, "--name", "lone", "--stay", "--checkpoint-every", "5s", "--", "sh", "-c",
		"i=1; while [ $i -le 1000 ]; do echo $i; i=$((i+1)); sleep 0.1; done; exit 5")
	if err != nil {
		t.Fatalf("drift run -d on node 3: %v", err)
	}
	lone = strings.TrimSpace(lone)
	// And the mover, homed on the head: it is moving to worker 1 when its
	// node goes off, between the restore and the commit.
	mv := startMover(ctx, t, l, gone)
	// Each job is looked for in its home's listing (node 2 for the held
	// job and the counter, node 3 for the lone job): a listing of the whole
	// cluster may miss a busy node's jobs.
	var id, counter string
	var ckpt *api.CheckpointInfo
	loneCk := false
	for (id == "" || ckpt == nil || !loneCk) && ctx.Err() == nil {
		select {
		case r := <-done:
			t.Fatalf("drift run --node %s ended before its node went: %+v, %v", gone, r.res, r.err)
		case r := <-counted:
			ps, err := l.ExecOK(ctx, 1, "drift", "ps")
			t.Fatalf("the counter on %s ended (exit %v, %v) before the others had a checkpoint (held %q, counter %v, lone %v); drift ps (%v):\n%s", gone, r.res.ExitCode, r.err, id, ckpt != nil, loneCk, err, ps)
		case <-time.After(time.Second):
		}
		for _, n := range []int{2, 3} {
			js, _ := l.Jobs(ctx, n)
			for _, j := range js {
				switch {
				case j.Node == gone && j.Exit == nil && j.Name == "held":
					id = j.ID
				case j.Node == gone && j.Exit == nil && j.Name == "counter":
					counter, ckpt = j.ID, j.Checkpoint
				case j.ID == lone && j.Checkpoint != nil:
					loneCk = true
				}
			}
		}
	}
	t.Logf("job %s runs on %s; the counter %s too, checkpointed at %s (%d bytes, frozen %s)", id, gone, counter, ckpt.At.Format("15:04:05.0"), ckpt.Bytes, ckpt.Freeze)
	if why, err := l.ExecOK(ctx, 1, "drift", "why", id); err != nil || !strings.Contains(why, "no checkpoint") {
		t.Errorf("drift why %s (holds a file under /tmp): %q, %v; want it to say it has no checkpoint", id, why, err)
	}
	time.Sleep(3 * time.Second) // some work after the checkpoint, to be redone
	samplers := startSamplers(ctx, t, l, 1, 2)
	mig := moveUntilHeld(ctx, t, l, mv, 3, names[1], 2)

	if err := l.StopNode(ctx, 3); err != nil {
		t.Fatalf("power off node 3: %v", err)
	}
	off := time.Now()
	dctx, cancel := context.WithDeadline(ctx, off.Add(deadDeadline))
	defer cancel()
	_, err = l.WaitMembers(dctx, []int{1, 2}, func(_ int, st map[string]string) bool { return st[gone] == "dead" })
	if err != nil {
		t.Fatalf("nodes 1 and 2 show %s dead within %s of its power-off: %v", gone, deadDeadline, err)
	}
	dead := time.Now()
	t.Logf("%s shown dead by both others %s after power-off", gone, since(off))

	select {
	case r := <-done:
		switch {
		case r.err != nil:
			t.Errorf("drift run of a job on the node that died: %v", r.err)
		case r.res.ExitCode != 255 || !strings.Contains(string(r.res.Stderr), "died"):
			t.Errorf("drift run of a job on the node that died exited %d, stderr %q; want 255 and that the node died", r.res.ExitCode, r.res.Stderr)
		default:
			t.Logf("drift run ended %s after the node was seen dead: exit %d, %s", r.at.Sub(dead).Round(100*time.Millisecond), r.res.ExitCode, strings.TrimSpace(string(r.res.Stderr)))
		}
	case <-time.After(time.Minute): // a hang guard: the home hears within a second of its membership
		t.Errorf("drift run of a job on %s still waits a minute after the node was seen dead", gone)
	}
	if j, err := l.Job(ctx, 1, id); err != nil || j.State != "exited" || j.Exit == nil || *j.Exit != 255 {
		t.Errorf("drift ps of job %s after its node died: %+v, %v; want exited 255", id, j, err)
	}

	// The job whose home died: homed on worker 1 now, attached from the head.
	att, err := l.Exec(ctx, 1, "drift", "attach", orphan)
	switch {
	case err != nil:
		t.Errorf("drift attach %s from the head after its home died: %v", orphan, err)
	case att.ExitCode != 3 || !strings.HasSuffix(string(att.Stdout), "\n1000\n") || !strings.Contains(string(att.Stderr), names[1]+" is its home now"):
		t.Errorf("drift attach %s from the head after its home %s died: exit %d, stderr %q, stdout ends %q; want 3, the takeover said, and the output to 1000", orphan, gone, att.ExitCode, att.Stderr, tail(string(att.Stdout), 40))
	default:
		t.Logf("drift attach %s from the head after its home died: exit 3, %d bytes to line 1000; %s", orphan, len(att.Stdout), strings.TrimSpace(string(att.Stderr)))
	}
	for _, n := range []int{1, 2} {
		if j, err := l.Job(ctx, n, orphan); err != nil || j.Home != names[1] || j.Exit == nil || *j.Exit != 3 {
			t.Errorf("drift ps on node %d, job %s whose home died: %+v, %v; want homed on %s, exited 3", n, orphan, j, err, names[1])
		}
	}

	// The job that ran on its home: claimed by another node, started again
	// from its checkpoint, attached from the head.
	att, err = l.Exec(ctx, 1, "drift", "attach", lone)
	switch {
	case err != nil:
		t.Errorf("drift attach %s from the head after its node and home died: %v", lone, err)
	case att.ExitCode != 5 || !strings.HasSuffix(string(att.Stdout), "\n1000\n") || !strings.Contains(string(att.Stderr), "is its home now") || !strings.Contains(string(att.Stderr), "recovered on"):
		t.Errorf("drift attach %s from the head after its node and home %s died: exit %d, stderr %q, stdout ends %q; want 5, the claim and the recovery said, and the output to 1000", lone, gone, att.ExitCode, att.Stderr, tail(string(att.Stdout), 40))
	default:
		t.Logf("drift attach %s after its node and home died: exit 5, %d bytes to line 1000; %s", lone, len(att.Stdout), strings.TrimSpace(string(att.Stderr)))
	}

	// The counter: recovered, each line once, exit 0.
	select {
	case r := <-counted:
		want := ""
		for i := 1; i <= 1000; i++ {
			want += fmt.Sprintln(i)
		}
		switch {
		case r.err != nil:
			t.Errorf("drift run of the checkpointed counter: %v", r.err)
		case r.res.ExitCode != 0 || string(r.res.Stdout) != want:
			t.Errorf("drift run of the checkpointed counter exited %d, stderr %q, stdout %s; want 1..1000 once each and 0", r.res.ExitCode, r.res.Stderr, describeLines(string(r.res.Stdout)))
		case !strings.Contains(string(r.res.Stderr), "recovered on"):
			t.Errorf("drift run of the checkpointed counter: stderr %q; want the recovery line", r.res.Stderr)
		default:
			t.Logf("the counter ended %s after its node was seen dead, lines 1..1000 once each; stderr: %s", r.at.Sub(dead).Round(100*time.Millisecond), strings.TrimSpace(string(r.res.Stderr)))
		}
	case <-time.After(6 * time.Minute): // about 2 when the head is idle; it is not
		t.Errorf("the checkpointed counter's drift run still runs 6 minutes after its node was seen dead")
	}
	if j, err := l.Job(ctx, 1, counter); err != nil || j.Exit == nil || *j.Exit != 0 || !strings.Contains(j.Recovered, "recovered on") {
		t.Errorf("drift ps of the counter %s: %+v, %v; want exited 0, recovered", counter, j, err)
	}
	// The mover: its held copy dropped, started again from its checkpoint.
	checkMover(ctx, t, l, mv)
	if res, _ := mig.waitUntil(time.Now().Add(time.Minute)); res != nil {
		t.Logf("drift migrate of the mover, whose source died before the commit: exit %d, %s", res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	samplers.check(ctx, t)

	// Their checkpoints are gone: only the home files of the jobs that
	// other nodes took over stay, while those nodes keep their records.
	// Their homes remove them as the jobs end, in the background.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(2 * time.Second) {
		res, err := l.Exec(ctx, 1, "sh", "-c", "ls -d /cluster/.drift/jobs/*/ckpt-* /cluster/.drift/jobs/*/.partial-* 2>/dev/null")
		left := ""
		if res != nil {
			left = strings.TrimSpace(string(res.Stdout))
		}
		if err == nil && left == "" {
			break
		}
		if time.Now().After(deadline) {
			all, _ := l.ExecOK(ctx, 1, "ls", "-laR", "/cluster/.drift/jobs")
			t.Errorf("checkpoints left a minute after their jobs exited: %q, %v:\n%s", left, err, all)
			break
		}
	}

	if err := l.StartNode(ctx, 3); err != nil {
		t.Fatalf("boot node 3 again: %v", err)
	}
	t.Logf("node 3 qemu command line: %s", l.CommandLine(3))
	r, err := l.WaitReadyNode(ctx, 3)
	if err != nil {
		t.Fatalf("node 3 booted again: %v", err)
	}
	if r.Name != gone {
		t.Errorf("node 3 came back as %s, want %s (same MAC)", r.Name, gone)
	}
	back := time.Now()
	if _, err := l.WaitMembers(ctx, []int{1, 2, 3}, lab.AllAlive(names...)); err != nil {
		t.Fatalf("node 3 rejoins: %v", err)
	}
	t.Logf("node 3 alive again everywhere %s after its ready line", since(back))
}

// TestNoHeadLinkLocal boots three workers on a segment with no DHCP
// server: they take link-local addresses and still form one cluster,
// which the host reaches over the bridge's link-local address.
func TestNoHeadLinkLocal(t *testing.T) {
	img := image(t)
	t.Parallel()
	l, ctx := bootLab(t, lab.Config{Image: img, Nodes: 3, NoHead: true}, 10*time.Minute)
	lastReady := time.Now()
	names := readyNames(t, l)
	ll := netip.MustParsePrefix("169.254.0.0/16")
	for n := 1; n <= 3; n++ {
		r, _ := l.Ready(n)
		if a, err := netip.ParseAddr(r.Addr); err != nil || !ll.Contains(a) || r.Role != "worker" {
			t.Errorf("node %d ready as %s at %q, want a worker with a link-local address", n, r.Role, r.Addr)
		}
	}
	if _, err := l.WaitMembers(ctx, []int{1, 2, 3}, lab.AllAlive(names...)); err != nil {
		t.Fatalf("three link-local workers form one cluster: %v", err)
	}
	t.Logf("all 3 list 3 alive members %s after the last ready line", since(lastReady))
	r, _ := l.Ready(2)
	nodes, err := hostNodes(ctx, l, buildDrift(t), r.Addr, filepath.Join(img.Dir, imagebuild.KeyName))
	if err != nil {
		t.Fatalf("drift --cluster %s from the host: %v", r.Addr, err)
	}
	if got := lab.MemberStates(nodes); !lab.AllAlive(names...)(0, got) {
		t.Errorf("host lists %v through %s, want %v alive", got, r.Addr, names)
	}
}

// bootLab starts a lab for the test, logs its QEMU command lines and
// waits until every node is ready; the context it returns bounds the whole
// test by timeout.
func bootLab(t *testing.T, cfg lab.Config, timeout time.Duration) (*lab.Lab, context.Context) {
	t.Helper()
	l := startLab(t, cfg)
	for n := 1; n <= l.Nodes(); n++ {
		t.Logf("node %d qemu command line: %s", n, l.CommandLine(n))
	}
	ctx := waitContext(t, timeout)
	start := time.Now()
	if err := l.WaitReady(ctx, func(r lab.Ready) { t.Logf("ready after %s: node %d: %s", since(start), r.Node, r.Line) }); err != nil {
		t.Fatalf("wait for %d nodes: %v", l.Nodes(), err)
	}
	return l, ctx
}

// readyNames returns the names of the lab's nodes, from their ready lines.
func readyNames(t *testing.T, l *lab.Lab) []string {
	t.Helper()
	var names []string
	for n := 1; n <= l.Nodes(); n++ {
		r, ok := l.Ready(n)
		if !ok {
			t.Fatalf("node %d has no ready line", n)
		}
		names = append(names, r.Name)
	}
	return names
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }

// addForeign boots one more node with a key of its own (and args), stopped
// when the test ends, and returns it once it says ready.
func (c *cluster) addForeign(ctx context.Context, t *testing.T, args ...string) (int, lab.Ready) {
	t.Helper()
	n, err := c.l.Add(ctx, append([]string{"drift.key=" + randomKeyHex(t)}, args...))
	if err != nil {
		t.Fatalf("add a node with another key: %v", err)
	}
	t.Cleanup(func() { c.l.StopNode(context.Background(), n) })
	t.Logf("node %d qemu command line: %s", n, c.l.CommandLine(n))
	r, err := c.l.WaitReadyNode(ctx, n)
	if err != nil {
		t.Fatalf("node with another key: %v", err)
	}
	return n, r
}

func randomKeyHex(t *testing.T) string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

var (
	driftOnce sync.Once
	driftBin  string
	driftErr  error
)

// buildDrift builds the drift CLI for the host, once per test binary.
func buildDrift(t *testing.T) string {
	t.Helper()
	driftOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ddrift-")
		if err != nil {
			driftErr = err
			return
		}
		driftBin = filepath.Join(dir, "drift")
		out, err := exec.Command("go", "build", "-o", driftBin, "github.com/driftcluster/drift/cmd/drift").CombinedOutput()
		if err != nil {
			driftErr = fmt.Errorf("go build drift: %w: %s", err, out)
		}
	})
	if driftErr != nil {
		t.Fatal(driftErr)
	}
	return driftBin
}

// hostNodes runs the drift CLI on the host, in the lab's network, against
// the node at addr with the key in keyFile.
func hostNodes(ctx context.Context, l *lab.Lab, drift, addr, keyFile string) ([]api.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := l.Command(ctx, drift, "--cluster", addr, "--key-file", keyFile, "nodes", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %s", cmd, err, strings.TrimSpace(stderr.String()))
	}
	var nodes []api.Node
	if err := json.Unmarshal(out, &nodes); err != nil {
		return nil, fmt.Errorf("%s: %w", cmd, err)
	}
	return nodes, nil
}

// describeLines summarises numbered output lines for an error: how many,
// the first and last, and the first line out of sequence.
func describeLines(out string) string {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	for i, ln := range lines {
		if ln != fmt.Sprint(i+1) {
			return fmt.Sprintf("%d lines, first out of order at line %d: %q (then %q)", len(lines), i+1, ln, strings.Join(lines[i:min(len(lines), i+4)], ","))
		}
	}
	return fmt.Sprintf("%d lines, in order", len(lines))
}
