package migrate

import (
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/procfs"
	"golang.org/x/sys/unix"
)

// A job's threads run at nice 0 while CRIU dumps them, and back at their
// own after; a restored tree runs at the nice jobs run at.
func TestDumpNice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lowering a nice value needs root")
	}
	// A tree of two processes: sh and its sleep.
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { unix.Kill(-cmd.Process.Pid, unix.SIGKILL); cmd.Process.Kill(); cmd.Wait() }()
	var tids []int
	for range 100 {
		if tids = (procfs.Proc{}).TreeThreads(cmd.Process.Pid); len(tids) >= 2 {
			break
		}
		unix.Nanosleep(&unix.Timespec{Nsec: 20e6}, nil)
	}
	if len(tids) < 2 {
		t.Fatalf("tree of %d has threads %v, want sh and sleep", cmd.Process.Pid, tids)
	}
	nices := func() []int {
		var out []int
		for _, tid := range tids {
			n, err := jobinit.ThreadNice(tid)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		return out
	}
	for _, tid := range tids {
		if err := unix.Setpriority(unix.PRIO_PROCESS, tid, jobinit.Nice); err != nil {
			t.Fatal(err)
		}
	}
	lower := raiseNice(cmd.Process.Pid)
	for i, n := range nices() {
		if n != dumpNice {
			t.Errorf("thread %d at nice %d while dumped, want %d", tids[i], n, dumpNice)
		}
	}
	lower()
	for i, n := range nices() {
		if n != jobinit.Nice {
			t.Errorf("thread %d at nice %d after the dump, want %d back", tids[i], n, jobinit.Nice)
		}
	}
	// Restored from an image written while raised: settled to the jobs' nice.
	raiseNice(cmd.Process.Pid)
	settleNice(cmd.Process.Pid)
	for i, n := range nices() {
		if n != jobinit.Nice {
			t.Errorf("thread %d at nice %d once restored, want %d", tids[i], n, jobinit.Nice)
		}
	}
}

// CRIU starts at criuNice, and the agent's thread that started it goes
// back to its own nice value.
func TestNicedStart(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("lowering a nice value needs root")
	}
	cmd := exec.Command("sleep", "30")
	var tid, was int
	err := niced(criuNice, func() error {
		tid = unix.Gettid()
		return cmd.Start()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	if n, err := jobinit.ThreadNice(cmd.Process.Pid); err != nil || n != criuNice {
		t.Errorf("started at nice %d (%v), want %d", n, err, criuNice)
	}
	was, err = jobinit.ThreadNice(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if n, err := jobinit.ThreadNice(tid); err != nil || n != was {
		t.Errorf("the starting thread is at nice %d (%v) after, want %d as before", n, err, was)
	}
}
