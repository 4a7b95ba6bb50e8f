package taskexec

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

var ballast []byte

// The test binary is also the wrapper (task-exec), and a command that
// holds memory (hold-mb N).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == Arg {
		if mb, _ := strconv.Atoi(os.Getenv("DRIFT_TEST_WRAPPER_MB")); mb > 0 {
			ballast = touched(mb) // a wrapper bigger than its command
		}
		os.Exit(Run(os.Args[2:]))
	}
	if len(os.Args) > 2 && os.Args[1] == "hold-mb" {
		mb, _ := strconv.Atoi(os.Args[2])
		ballast = touched(mb)
		time.Sleep(time.Second)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

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
		pidNS    bool // as in a job: in a PID namespace of its own, with the node's /proc
	}{
		{"small command, large wrapper", []string{"sleep", "1"}, 1, 32 << 20, false},
		{"large command", []string{self, "hold-mb", "100"}, 100 << 20, 400 << 20, false},
		{"small command in a PID namespace", []string{"sleep", "1"}, 1, 32 << 20, true},
		{"large command in a PID namespace", []string{self, "hold-mb", "100"}, 100 << 20, 400 << 20, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.pidNS && os.Geteuid() != 0 {
				t.Skip("a PID namespace needs root")
			}
			dir := t.TempDir()
			res := filepath.Join(dir, "1.1")
			args := append([]string{Arg, "--out", filepath.Join(dir, "out"), "--err", filepath.Join(dir, "err"), "--result", res, "--"}, c.argv...)
			cmd := exec.Command(self, args...)
			cmd.Env = append(os.Environ(), "DRIFT_TEST_WRAPPER_MB=64")
			if c.pidNS {
				cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
			}
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("task-exec: %v: %s", err, out)
			}
			b, err := os.ReadFile(res + ".ok")
			if err != nil {
				t.Fatal(err)
			}
			var r Result
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			if r.PeakRSS < c.min || r.PeakRSS > c.max {
				t.Errorf("peak RSS %d KiB, want between %d and %d KiB (the wrapper holds 64 MiB)", r.PeakRSS>>10, c.min>>10, c.max>>10)
			}
		})
	}
}
