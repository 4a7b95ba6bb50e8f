package qemutests

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/agent/migrate"
)

// migratetestResult is the last stderr line of migratetest source.
type migratetestResult struct {
	Migrated bool
	Err      string
	Reasons  []api.MoveReason
	Stats    migrate.Stats
}

// testMigratePackage moves jobs from the head to worker 1 with package
// migrate alone and real CRIU (it does not work on the hosts' own
// kernel), driven by agent/migrate/internal/migratetest in place of the
// agents: a counter whose output must come out whole, a target that dies
// while the job is frozen, and a job that holds a /tmp file.
func testMigratePackage(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	bin := filepath.Join(t.TempDir(), "migratetest")
	build := exec.Command("go", "build", "-ldflags=-s -w", "-o", bin, "github.com/driftcluster/drift/agent/migrate/internal/migratetest")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build migratetest: %v\n%s", err, out)
	}
	prog, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	// Compressed: the lab port carries stdin slowly under TCG.
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(prog)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 2; n++ {
		nodeRun(ctx, t, c, n, nil, "cp", "/bin/drift-workload", "/tmp/mt") // an executable to overwrite, whatever the image's chmod
		nodeRun(ctx, t, c, n, gz.Bytes(), "sh", "-c", "gunzip -c > /tmp/mt")
	}
	target := nodeAddr(ctx, t, l, 2) + ":7070"

	for _, tt := range []struct {
		name       string
		targetArgs []string
		sourceArgs []string
		lines      int
		migrated   bool
		errHas     string
	}{
		{"counter moves whole", nil, []string{"-after", "3s"}, 300, true, ""},
		{"target dies while frozen", []string{"-die-at", "final.tar"}, []string{"-after", "3s"}, 100, false, "send final"},
		{"file under /tmp", nil, []string{"-after", "2s", "-open-tmp"}, 50, false, "/tmp/migratetest.log (fd 3)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				res, err := labport.Exec(ctx, l.LabSock(2), labport.Request{Argv: append([]string{"/tmp/mt", "target", "-listen", ":7070"}, tt.targetArgs...)})
				if err == nil {
					t.Logf("target: exit %d\n%s", res.ExitCode, res.Stderr)
				}
			}()
			argv := append([]string{"/tmp/mt", "source", "-target", target}, tt.sourceArgs...)
			argv = append(argv, "/bin/drift-workload", "counter", "-n", strconv.Itoa(tt.lines), "-every", "100ms")
			res, err := labport.Exec(ctx, l.LabSock(1), labport.Request{Argv: argv})
			if err != nil {
				t.Fatalf("source: %v", err)
			}
			wg.Wait()
			t.Logf("source: exit %d\n%s", res.ExitCode, res.Stderr)
			var want strings.Builder
			for i := 1; i <= tt.lines; i++ {
				fmt.Fprintln(&want, i)
			}
			if got := string(res.Stdout); got != want.String() {
				t.Errorf("job output = %q, want 1..%d once each", got, tt.lines)
			}
			var r migratetestResult
			lines := strings.Split(strings.TrimSpace(string(res.Stderr)), "\n")
			if s, ok := strings.CutPrefix(lines[len(lines)-1], "RESULT "); !ok || json.Unmarshal([]byte(s), &r) != nil {
				t.Fatalf("no RESULT line from the source")
			}
			if r.Migrated != tt.migrated || !strings.Contains(r.Err, tt.errHas) {
				t.Errorf("Migrate: migrated %v, error %q; want migrated %v, error containing %q", r.Migrated, r.Err, tt.migrated, tt.errHas)
			}
			t.Logf("stats: %+v", r.Stats)
		})
	}
}

// nodeRun runs argv on node n with stdin and fails the test unless it
// exits 0.
func nodeRun(ctx context.Context, t *testing.T, c *cluster, n int, stdin []byte, argv ...string) {
	t.Helper()
	res, err := labport.Exec(ctx, c.l.LabSock(n), labport.Request{Argv: argv, Stdin: stdin})
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("node %d: %q: %v %+v", n, argv, err, res)
	}
}
