package qemutests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// promAddr is where the test's Prometheus serves its query API, inside
// the lab's network namespace.
const promAddr = "127.0.0.1:19090"

// testMetricsAndEvents runs Debian's Prometheus server on the host side
// of the lab, scraping worker 1's /metrics with the files of drift cert;
// a scrape of any other path with the same certificate is refused. A job
// on worker 1 is moved to worker 2 with drift migrate: Prometheus'
// query API then shows drift_migrations_total{result="ok"} one higher
// than before, and drift events --json from the host lists the
// migration with its freeze time.
func testMetricsAndEvents(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	w1, w2 := c.names[1], c.names[2]
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("Debian's prometheus package is not installed (configs/host-packages.txt lists it): %v", err)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal(err)
	}
	drift := buildDrift(t)
	key := filepath.Join(c.img.Dir, imagebuild.KeyName)
	dir := t.TempDir()
	if out, err := exec.CommandContext(ctx, drift, "cert", "--out", dir, "--key-file", key).CombinedOutput(); err != nil {
		t.Fatalf("drift cert --out %s: %v: %s", dir, err, out)
	}
	scrape, err := os.ReadFile(filepath.Join(dir, "prometheus-scrape.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// The job drift cert wrote, at worker 1 (its address as the head
	// lists it: the head's DHCP server numbers the workers in no fixed
	// order); and the same with a path the certificate may not read.
	ms, err := l.Members(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	addr := ""
	for _, m := range ms {
		if m.Name == w1 {
			addr = m.Addr
		}
	}
	if addr == "" {
		t.Fatalf("the head does not list %s: %+v", w1, ms)
	}
	job := strings.Replace(string(scrape), "NODE-ADDRESS", addr, 1)
	forbidden := strings.Replace(strings.Replace(job, "job_name: drift", "job_name: drift-forbidden", 1),
		"metrics_path: "+api.MetricsPath, "metrics_path: /v1/nodes", 1)
	cfg := "global:\n  scrape_interval: 2s\n  scrape_timeout: 2s\nscrape_configs:\n" + indent(job) + indent(forbidden)
	cfgFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("prometheus.yml:\n%s", cfg)
	startHost(ctx, t, l, prom, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+promAddr, "--log.level=warn")

	query := func(expr string) (float64, bool) {
		t.Helper()
		qctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		cmd := l.Command(qctx, promtool, "query", "instant", "-o", "json", "http://"+promAddr, expr)
		out, err := cmd.Output()
		if err != nil {
			return 0, false // not up yet
		}
		var vec []struct {
			Value [2]any `json:"value"`
		}
		if err := json.Unmarshal(out, &vec); err != nil || len(vec) != 1 {
			return 0, false
		}
		s, _ := vec[0].Value[1].(string)
		v, err := strconv.ParseFloat(s, 64)
		return v, err == nil
	}
	waitQuery := func(expr string, ok func(float64) bool, limit time.Duration) float64 {
		t.Helper()
		var v float64
		var got bool
		for until := time.Now().Add(limit); ; {
			v, got = query(expr)
			if got && ok(v) {
				return v
			}
			if time.Now().After(until) || ctx.Err() != nil {
				t.Fatalf("Prometheus: %s = %v (answered: %v) after %s", expr, v, got, limit)
			}
			time.Sleep(2 * time.Second)
		}
	}
	waitQuery(`up{job="drift"}`, func(v float64) bool { return v == 1 }, 2*time.Minute)
	before := waitQuery(`drift_migrations_total{job="drift",result="ok"}`, func(float64) bool { return true }, time.Minute)
	t.Logf("Prometheus scrapes %s at %s over TLS with drift cert's files: drift_migrations_total{result=\"ok\"} = %v", w1, addr, before)
	// The same certificate on /v1/nodes: the scrape is refused (403).
	waitQuery(`up{job="drift-forbidden"}`, func(v float64) bool { return v == 0 }, 30*time.Second)

	out, err := l.ExecOK(ctx, 2, "drift", "run", "-d", "--stay", "--node", w1, "--name", "scraped", "--", "sleep", "600")
	if err != nil {
		t.Fatal(err)
	}
	id := strings.TrimSpace(out)
	waitJob(ctx, t, l, 1, id, lab.Running(w1))
	t.Cleanup(func() { l.Exec(context.Background(), 1, "drift", "kill", id) })
	if out, err := l.ExecOK(ctx, 1, "drift", "migrate", id, w2); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("drift migrate %s %s: %s", id, w2, strings.TrimSpace(out))
	}
	waitJob(ctx, t, l, 1, id, lab.Running(w2))
	after := waitQuery(`drift_migrations_total{job="drift",result="ok"}`, func(v float64) bool { return v >= before+1 }, time.Minute)
	if after != before+1 {
		t.Errorf(`Prometheus: drift_migrations_total{result="ok"} went from %v to %v after one migration, want +1`, before, after)
	}
	freezes := waitQuery(`drift_migration_freeze_seconds_count{job="drift"}`, func(v float64) bool { return v >= 1 }, 30*time.Second)
	t.Logf("Prometheus: drift_migrations_total{result=\"ok\"} %v → %v; freeze histogram count %v", before, after, freezes)

	// drift events --json, from the host through the head: worker 1's
	// migration with its freeze time.
	ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := l.Command(ectx, drift, "--cluster", "10.77.0.1", "--key-file", key, "events", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	evOut, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, stderr.String())
	}
	var found *api.Event
	var prev time.Time
	for i, line := range strings.Split(strings.TrimSpace(string(evOut)), "\n") {
		var e api.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("drift events --json line %d is not one JSON object: %q: %v", i+1, line, err)
		}
		if e.Time.Before(prev) {
			t.Errorf("drift events --json line %d goes back in time: %s after %s", i+1, e.Time, prev)
		}
		prev = e.Time
		if e.Kind == api.EventMigration && e.Str("job") == id {
			found = &e
			t.Logf("drift events --json: %s", line)
		}
	}
	if found == nil {
		t.Fatalf("drift events --json lists no migration of job %s:\n%s", id, evOut)
	}
	freeze, ok := found.Float("freeze_seconds")
	if found.Node != w1 || found.Str("to") != w2 || found.Str("result") != api.MigrationOK || !ok || freeze <= 0 {
		t.Errorf("migration event = %+v, want from %s to %s, result ok, with a freeze time", *found, w1, w2)
	}
	if !strings.Contains(string(evOut), `"kind":"join"`) {
		t.Errorf("drift events --json lists no join:\n%s", evOut)
	}
	if stderr.Len() > 0 {
		t.Errorf("drift events: %s", stderr.String())
	}
	if _, err := l.ExecOK(ctx, 1, "drift", "kill", id); err != nil {
		t.Error(err)
	}
}

// indent indents a YAML list item by two spaces, under scrape_configs.
func indent(s string) string {
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		fmt.Fprintf(&b, "  %s\n", line)
	}
	return b.String()
}
