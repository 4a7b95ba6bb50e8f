package arrays

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var ballast []byte

// touched is mb MiB of memory, every page written.
func touched(mb int) []byte {
	b := make([]byte, mb<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}

// TestTaskPeakRSS runs the wrapper (this test binary) on commands, and
// checks the peak memory it records: a small command under a large
// wrapper reports its own size, not the wrapper's, and a large one its
// own.
func TestTaskPeakRSS(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		argv     []string
		min, max uint64
	}{
		{"small command, large wrapper", []string{"sleep", "1"}, 1, 32 << 20},
		{"large command", []string{self, "hold-mb", "100"}, 100 << 20, 400 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			res := filepath.Join(dir, "1.1")
			args := append([]string{TaskArg, "--out", filepath.Join(dir, "out"), "--err", filepath.Join(dir, "err"), "--result", res, "--"}, c.argv...)
			cmd := exec.Command(self, args...)
			cmd.Env = append(os.Environ(), "DRIFT_TEST_WRAPPER_MB=64")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("task-exec: %v: %s", err, out)
			}
			b, err := os.ReadFile(res + ".ok")
			if err != nil {
				t.Fatal(err)
			}
			var r result
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if r.PeakRSS < c.min || r.PeakRSS > c.max {
				t.Errorf("peak RSS %d MiB, want between %d and %d MiB (the wrapper holds 64)", r.PeakRSS>>20, c.min>>20, c.max>>20)
			}
		})
	}
}
