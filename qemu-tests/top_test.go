package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// testTop runs drift top from the host, as a workstation would (through
// the head, with the key file), in an 80×25 tmux window: the screen
// shows the three nodes and a job running on worker 1; after drift
// migrate the job's row shows worker 2 and the event feed the migration
// with its freeze time. Then top's own keys move the job back (m and the
// node's number) and kill it (k, y). Every screen captured is logged and
// kept in the lab's directory as top-screens.txt.
func testTop(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	w1, w2 := c.names[1], c.names[2]
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("Debian's tmux package is not installed (configs/host-packages.txt lists it): %v", err)
	}
	drift := buildDrift(t)
	key := filepath.Join(c.img.Dir, imagebuild.KeyName)
	sock := filepath.Join(t.TempDir(), "tmux.sock")
	screens := filepath.Join(l.Dir(), "top-screens.txt")

	out, err := l.ExecOK(ctx, 2, "drift", "run", "-d", "--stay", "--node", w1, "--name", "topjob", "--",
		"drift-workload", "counter", "-n", "3000", "-every", "100ms")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() { l.Exec(context.Background(), 1, "drift", "kill", id) })
	waitJob(ctx, t, l, 1, id, lab.Running(w1))

	// tmux in the lab's network namespace, so that drift top reaches the
	// head; when drift top ends, the window keeps its last words.
	top := fmt.Sprintf("%s --cluster 10.77.0.1 --key-file %s top; echo drift top exited: $?; sleep 600", drift, key)
	cmd := l.Command(ctx, "tmux", "-S", sock, "new-session", "-d", "-x", "80", "-y", "25", "-s", "top", top)
	t.Logf("%s", cmd)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })

	n := 0
	capture := func() string {
		t.Helper()
		out, err := exec.CommandContext(ctx, "tmux", "-S", sock, "capture-pane", "-p", "-t", "top").Output()
		if err != nil {
			t.Fatalf("tmux capture-pane: %v", err)
		}
		return string(out)
	}
	keep := func(what, screen string) {
		n++
		t.Logf("drift top, screen %d, %s:\n%s", n, what, screen)
		f, err := os.OpenFile(screens, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err == nil {
			fmt.Fprintf(f, "--- screen %d: %s\n%s\n", n, what, screen)
			f.Close()
		}
	}
	// waitScreen captures the screen until ok holds, within a limit, and
	// keeps the last one captured.
	waitScreen := func(what string, limit time.Duration, ok func(string) error) string {
		t.Helper()
		var screen string
		var err error
		for until := time.Now().Add(limit); ; time.Sleep(time.Second) {
			screen = capture()
			if err = ok(screen); err == nil || time.Now().After(until) || ctx.Err() != nil {
				break
			}
		}
		keep(what, screen)
		if err != nil {
			t.Fatalf("drift top after %s: %v", limit, err)
		}
		return screen
	}
	keys := func(k ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, "tmux", append([]string{"-S", sock, "send-keys", "-t", "top"}, k...)...).CombinedOutput(); err != nil {
			t.Fatalf("tmux send-keys %q: %v: %s", k, err, out)
		}
	}
	// jobRow is the job's row: its id, then (after the name) the node it
	// runs on and its state.
	jobRow := func(screen string) string {
		for _, line := range strings.Split(screen, "\n") {
			if f := strings.Fields(strings.TrimPrefix(line, "> ")); len(f) > 0 && f[0] == id {
				return line
			}
		}
		return ""
	}
	runsOn := func(node string) func(string) error {
		return func(screen string) error {
			row := jobRow(screen)
			if !strings.Contains(row, " "+node+" ") || !strings.Contains(row, " running ") {
				return fmt.Errorf("job %s's row is %q, want it running on %s", id, row, node)
			}
			return nil
		}
	}

	waitScreen("a job on worker 1", time.Minute, func(s string) error {
		for _, name := range c.names {
			if !regexp.MustCompile(`(?m)^. ` + name + `\*? +alive `).MatchString(s) {
				return fmt.Errorf("no row shows %s alive", name)
			}
		}
		return runsOn(w1)(s)
	})

	if out, err := l.ExecOK(ctx, 1, "drift", "migrate", id, w2); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("drift migrate %s %s: %s", id, w2, strings.TrimSpace(out))
	}
	moved := regexp.MustCompile(regexp.QuoteMeta(id+" "+w1+"->"+w2+" frozen ") + `[0-9.]+[mµn]?s`)
	waitScreen("drift migrate to worker 2", 30*time.Second, func(s string) error {
		if err := runsOn(w2)(s); err != nil {
			return err
		}
		if !moved.MatchString(s) {
			return fmt.Errorf("the event feed shows no line matching %s", moved)
		}
		return nil
	})

	// Back to worker 1 with top's keys: m, then the number the screen
	// gives worker 1.
	keys("m")
	pick := waitScreen("m pressed", 10*time.Second, func(s string) error {
		if !regexp.MustCompile(`(?m)^[1-9] ` + w1 + ` `).MatchString(s) {
			return fmt.Errorf("no node row numbers %s for the move", w1)
		}
		return nil
	})
	digit := regexp.MustCompile(`(?m)^([1-9]) ` + w1 + ` `).FindStringSubmatch(pick)[1]
	keys(digit)
	waitScreen("moved back with the m key", time.Minute, func(s string) error {
		if err := runsOn(w1)(s); err != nil {
			return err
		}
		if !strings.Contains(s, id+" "+w2+"->"+w1+" frozen ") {
			return fmt.Errorf("the screen shows no move of %s back to %s", id, w1)
		}
		return nil
	})

	// k asks, y kills: the job leaves the table.
	keys("k")
	waitScreen("k pressed", 10*time.Second, func(s string) error {
		if !strings.Contains(s, "kill "+id+" (drift-workload counter") {
			return fmt.Errorf("no kill prompt for %s", id)
		}
		return nil
	})
	keys("y")
	waitScreen("killed with k, y", 30*time.Second, func(s string) error {
		if row := jobRow(s); row != "" {
			return fmt.Errorf("job %s is still listed: %q", id, row)
		}
		return nil
	})
	keys("q")
	waitScreen("q pressed", 10*time.Second, func(s string) error {
		if !strings.Contains(s, "drift top exited: 0") {
			return fmt.Errorf("drift top did not end with status 0")
		}
		return nil
	})
}
