//go:build linux

package migrate

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/procfs"
)

// watchDying kills the CRIU processes working in dir if the job rooted
// at pid is killed while CRIU dumps it, until the function it returns
// is called. CRIU traces every task of the job: a job killed then (drift
// kill, the OOM killer) leaves its tasks as zombies that only CRIU may
// reap, while CRIU waits for the job's init, which as PID 1 of its
// namespace waits for them: the dump would never end, and the job would
// stay "migrating" for ever. Killing CRIU lets the kernel detach them.
func watchDying(pid int, dir string, logf func(msg string, args ...any)) (stop func()) {
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			if !(procfs.Proc{}).Exiting(pid) {
				continue
			}
			// Give a dump that ends by itself (its job killed at its
			// very end) a moment.
			select {
			case <-done:
				return
			case <-time.After(2 * time.Second):
			}
			killed := killCriuIn(dir)
			logf("the job was killed during its dump: stopped CRIU", "pid", pid, "criu", killed)
			return
		}
	}()
	return func() { close(done); <-ended }
}

// killCriuIn kills the CRIU processes whose command line names dir (the
// dumping process shows its images directory), and their parent when it
// is CRIU too (the swrk this agent talks to), and returns their PIDs.
func killCriuIn(dir string) []int {
	ents, _ := os.ReadDir(procRoot)
	var out []int
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(cmd, []byte("criu")) || !namesDir(cmd, dir) {
			continue
		}
		out = append(out, p)
		if pp := (procfs.Proc{}).Parent(p); pp > 1 && pp != os.Getpid() {
			if (procfs.Proc{}).Comm(pp) == "criu" {
				syscall.Kill(pp, syscall.SIGKILL)
				out = append(out, pp)
			}
		}
		syscall.Kill(p, syscall.SIGKILL)
	}
	return out
}

// namesDir reports whether the command line cmd names dir or a path
// under it (and not only a longer name that begins with it).
func namesDir(cmd []byte, dir string) bool {
	for rest := cmd; ; {
		i := bytes.Index(rest, []byte(dir))
		if i < 0 {
			return false
		}
		rest = rest[i+len(dir):]
		if len(rest) == 0 || rest[0] == '/' || rest[0] == ' ' || rest[0] == 0 {
			return true
		}
	}
}
