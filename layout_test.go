package drift_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs fails for any package of the module without a doc
// comment ("// Package x ..." or, for a command, "// Command x ...") on
// its package clause in one of its files.
func TestPackageDocs(t *testing.T) {
	dirs := map[string]bool{} // package directory: has a doc comment
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "out") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		dirs[dir] = dirs[dir] || f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != ""
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) < 10 {
		t.Fatalf("found %d packages; is the test run from the module root?", len(dirs))
	}
	for dir, ok := range dirs {
		if !ok {
			t.Errorf("package %s has no doc comment: say what it is for and who uses it (CONVENTIONS.md 1)", dir)
		}
	}
}

// TestCLIDeps keeps the drift command off the agent's internals: it talks
// to agents only through agent/api (CONVENTIONS.md 3 and 14).
func TestCLIDeps(t *testing.T) {
	if _, err := os.Stat("cmd/drift"); err != nil {
		t.Fatal(err)
	}
	deps := goList(t, "-deps", "./cmd/drift")
	banned := []string{
		"github.com/hashicorp/memberlist", "github.com/checkpoint-restore/go-criu", "github.com/hugelgupf/p9",
		"/agent/jobs", "/agent/migrate", "/agent/membership", "/agent/storage", "/agent/netboot", "/agent/daemon",
	}
	for _, d := range deps {
		for _, b := range banned {
			if strings.HasPrefix(d, b) || strings.Contains(d, "driftcluster/drift"+b) {
				t.Errorf("cmd/drift depends on %s: the CLI may link only agent/api and its leaves", d)
			}
		}
	}
}

// goList runs `go list` with args and returns its output lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}
