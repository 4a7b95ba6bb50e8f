package qemutests

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// testStalledTerminal stops a workstation's drift run (SIGSTOP, as
// Ctrl-Z does) while its job, homed on the head, writes as fast as it
// can: drift ps on every node still answers, and another job homed on
// the head still moves. Then the terminal goes on and hears what
// happened.
func testStalledTerminal(ctx context.Context, t *testing.T, c *cluster) {
	l, ws, head, w1, w2 := c.l, newWorkstation(t, c.l, c.img), c.names[0], c.names[1], c.names[2]
	pidFile := filepath.Join(t.TempDir(), "pid")
	argv := append([]string{"-c", `echo $$ > "$0"; exec "$@"`, pidFile, ws.drift, "run"}, ws.flags...)
	argv = append(argv, "--stay", "--node", head, "--name", "flood", "--", "yes", "a line that nobody reads")
	flood := startHost(ctx, t, l, "sh", argv...)
	job := waitNamed(ctx, t, l, 1, "flood", lab.Running(head))
	b, err := os.ReadFile(pidFile)
	pid, perr := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || perr != nil {
		t.Fatalf("the workstation's drift run pid: %q %v %v", b, err, perr)
	}
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			syscall.Kill(pid, syscall.SIGCONT)
		}
		l.Exec(context.WithoutCancel(ctx), 1, "drift", "kill", "-s", "KILL", job.ID)
	}()
	time.Sleep(3 * time.Second) // its queue on the head fills in a fraction of that

	// Another job homed on the head, then every node's drift ps, then a
	// move of that job: none waits on the stopped terminal.
	mover := strings.TrimSpace(ws.ok(ctx, t, "", "run", "-d", "--node", w1, "--name", "mover", "--",
		"drift-workload", "counter", "-n", "3000", "-every", "100ms"))
	defer l.Exec(context.WithoutCancel(ctx), 1, "drift", "kill", "-s", "KILL", mover)
	waitJob(ctx, t, l, 1, mover, lab.Running(w1))
	for n := 1; n <= 3; n++ {
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second) // a hang guard
		start := time.Now()
		out, err := l.ExecOK(pctx, n, "drift", "ps")
		cancel()
		if err != nil || !strings.Contains(out, job.ID) {
			t.Errorf("drift ps on node %d while a terminal is stopped: %v\n%s", n, err, out)
			continue
		}
		t.Logf("drift ps on node %d answered in %s", n, since(start))
	}
	res, err := l.Migrate(ctx, 1, mover, w2)
	if err != nil {
		t.Fatalf("drift migrate of another job homed on the head while a terminal is stopped: %v", err)
	}
	t.Logf("moved %s → %s meanwhile: freeze %s", res.From, res.To, res.Freeze.Round(time.Millisecond))

	// The terminal goes on: it hears that it fell behind, and how to
	// attach again.
	syscall.Kill(pid, syscall.SIGCONT)
	stopped = false
	out := flood.wait(ctx, t, 2*time.Minute)
	t.Logf("the stopped drift run, let go: exit %d, %d bytes of output, stderr %q", out.ExitCode, len(out.Stdout), tail(string(out.Stderr), 300))
	if !strings.Contains(string(out.Stderr), "attach") {
		t.Errorf("a terminal that fell behind was not told how to attach again: stderr %q", tail(string(out.Stderr), 300))
	}
}
