package qemutests

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// TestThreeNodes boots a 3-node lab from the kernel and initramfs, checks
// every ready line, and drives each node through its lab port.
func TestThreeNodes(t *testing.T) {
	img := image(t)
	t.Parallel()
	l := startLab(t, lab.Config{Image: img, Nodes: 3, Boot: lab.BootKernel})
	for n := 1; n <= l.Nodes(); n++ {
		t.Logf("node %d qemu command line: %s", n, l.CommandLine(n))
	}
	ctx := waitContext(t, 8*time.Minute)
	if err := l.WaitReady(ctx, func(r lab.Ready) { t.Logf("ready: node %d: %s", r.Node, r.Line) }); err != nil {
		t.Fatalf("wait for 3 nodes: %v", err)
	}
	names := map[string]int{}
	for n := 1; n <= l.Nodes(); n++ {
		r, _ := l.Ready(n)
		role := "worker"
		if n == 1 {
			role = "head"
		}
		checkReady(t, l, img, r, role)
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
	for n := 1; n <= l.Nodes(); n++ {
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
