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

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// uiListen is where the test's drift ui serves, inside the lab's network
// namespace.
const uiListen = "127.0.0.1:18470"

// testUI runs drift ui on the host side of the lab, as a workstation
// would (through the head, with the key file), and opens it in Debian's
// headless Chromium: the page's DOM shows the three nodes and a job on
// worker 1. The job is moved to worker 2 with the request the page sends
// when the job is dropped on that node: drift ps shows it there, and so
// does the page, with the migration in its event feed. A screenshot is
// kept in the lab's directory as ui.png (the last DOM as ui-dom.html);
// the page's kill request ends the job.
func testUI(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	w1, w2 := c.names[1], c.names[2]
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("Debian's chromium package is not installed (configs/host-packages.txt lists it): %v", err)
	}
	drift := buildDrift(t)
	key := filepath.Join(c.img.Dir, imagebuild.KeyName)
	base := "http://" + uiListen + "/"
	profile := t.TempDir()

	out, err := l.ExecOK(ctx, 2, "drift", "run", "-d", "--stay", "--node", w1, "--name", "uijob", "--",
		"drift-workload", "counter", "-n", "3000", "-every", "100ms")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	t.Cleanup(func() { l.Exec(context.Background(), 1, "drift", "kill", id) })
	waitJob(ctx, t, l, 1, id, lab.Running(w1))

	startHost(ctx, t, l, drift, "--cluster", "10.77.0.1", "--key-file", key, "ui", "--listen", uiListen)

	browser := func(args ...string) *exec.Cmd {
		bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		t.Cleanup(cancel)
		argv := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
			"--hide-scrollbars", "--user-data-dir=" + profile}, args...)
		return l.Command(bctx, chromium, append(argv, base)...)
	}
	var dom string
	// waitDOM loads the page in Chromium until its DOM passes ok.
	waitDOM := func(what string, limit time.Duration, ok func(string) error) {
		t.Helper()
		var err error
		for until := time.Now().Add(limit); ; time.Sleep(2 * time.Second) {
			cmd := browser("--dump-dom")
			b, cerr := cmd.Output()
			dom = string(b)
			if err = ok(dom); cerr != nil {
				err = fmt.Errorf("%s: %w", cmd, cerr)
			}
			if err == nil || time.Now().After(until) || ctx.Err() != nil {
				break
			}
		}
		os.WriteFile(filepath.Join(l.Dir(), "ui-dom.html"), []byte(dom), 0o644)
		if err != nil {
			t.Fatalf("drift ui's page, %s, after %s: %v\nDOM:\n%s", what, limit, err, dom)
		}
		t.Logf("drift ui's page shows %s", what)
	}
	jobOn := func(node string) func(string) error {
		card := regexp.MustCompile(`data-job="` + regexp.QuoteMeta(id) + `"[^>]*data-on="` + regexp.QuoteMeta(node) + `"`)
		return func(dom string) error {
			if !card.MatchString(dom) {
				return fmt.Errorf("no card of job %s in %s's list", id, node)
			}
			return nil
		}
	}
	waitDOM("three nodes and a job on worker 1", 2*time.Minute, func(dom string) error {
		for _, name := range c.names {
			if !strings.Contains(dom, `data-node="`+name+`"`) {
				return fmt.Errorf("no card for node %s", name)
			}
		}
		return jobOn(w1)(dom)
	})

	// What the page sends when the job is dropped on worker 2's card.
	post := func(path, body string) string {
		t.Helper()
		cmd := l.Command(ctx, "curl", "-sS", "--max-time", "300", "-H", "Content-Type: application/json",
			"-d", body, "-w", "\n%{http_code}", "http://"+uiListen+path)
		out, err := cmd.Output()
		if err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "\n200") {
			t.Fatalf("%s: %v: %s", cmd, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	t.Logf("POST /api/migrate: %s", post("/api/migrate", fmt.Sprintf(`{"job":%q,"to":%q}`, id, w2)))
	waitJob(ctx, t, l, 1, id, lab.Running(w2))
	moved := regexp.MustCompile(`<li class="migration">.*?` + regexp.QuoteMeta(id) + " " + regexp.QuoteMeta(w1) + " → " + regexp.QuoteMeta(w2) + ` ok frozen`)
	waitDOM("the job moved to worker 2", time.Minute, func(dom string) error {
		if err := jobOn(w2)(dom); err != nil {
			return err
		}
		if !moved.MatchString(dom) {
			return fmt.Errorf("the event feed shows no migration of %s from %s to %s", id, w1, w2)
		}
		return nil
	})

	shot := filepath.Join(l.Dir(), "ui.png")
	if out, err := browser("--screenshot="+shot, "--window-size=1280,900").CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v: %s", err, out)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("screenshot of drift ui: %s", shot)

	t.Logf("POST /api/kill: %s", post("/api/kill", fmt.Sprintf(`{"job":%q}`, id)))
	waitJob(ctx, t, l, 1, id, func(j api.JobInfo) bool { return j.State == api.JobExited })
}
