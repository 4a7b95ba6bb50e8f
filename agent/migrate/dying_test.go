//go:build linux

package migrate

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/procfs"
)

// A job killed while CRIU dumps it: once the job's root is exiting, the
// watchdog kills the CRIU process working in the dump's directory, and
// only that one.
func TestWatchDyingKillsCriu(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "migrate-1")
	// Stand-ins for CRIU: processes whose command line says criu and
	// names a directory, as the dumping CRIU's does.
	ours := exec.Command("sh", "-c", "sleep 60; true", "criu: dump --rpc -t 1 -D "+dir+"/final")
	other := exec.Command("sh", "-c", "sleep 60; true", "criu: dump --rpc -t 2 -D "+dir+"-other/final")
	for _, c := range []*exec.Cmd{ours, other} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { c.Process.Kill(); c.Wait() }()
	}
	job := exec.Command("sh", "-c", "sleep 1")
	if err := job.Start(); err != nil {
		t.Fatal(err)
	}
	defer job.Wait()
	if (procfs.Proc{}).Exiting(job.Process.Pid) {
		t.Fatal("a running job reads as exiting")
	}
	stop := watchDying(job.Process.Pid, dir, func(msg string, args ...any) { t.Log(append([]any{msg}, args...)...) })
	defer stop()
	oursDone := make(chan error, 1)
	go func() { oursDone <- ours.Wait() }()
	select {
	case <-oursDone:
	case <-time.After(10 * time.Second):
		// The job (not reaped: a zombie, as a killed job is under CRIU)
		// exited after 1 s; the watchdog waits 2 s more.
		t.Fatalf("CRIU's stand-in still runs 10 s after the job exited (exiting: %v)", (procfs.Proc{}).Exiting(job.Process.Pid))
	}
	time.Sleep(100 * time.Millisecond)
	if (procfs.Proc{}).Exiting(other.Process.Pid) { // killed, it would be a zombie: not reaped yet
		t.Error("the watchdog killed the CRIU of another dump")
	}
}
