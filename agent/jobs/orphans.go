package jobs

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/driftcluster/drift/agent/procfs"
)

// killOrphans kills the jobs that an earlier agent of this node ran and
// left behind when it died (kill -9, a crash): their output has nowhere
// to go, and their homes start them again from their checkpoints. It
// returns how many it killed. A job is a process whose command line is
// this executable's job init, and which is not a child of this process.
func killOrphans() int {
	self := os.Getpid()
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := bytes.Split(cmd, []byte{0})
		if len(args) < 2 || string(args[1]) != InitArg || (procfs.Proc{}).Parent(pid) == self {
			continue
		}
		// The init of its own PID namespace: killing it ends them all.
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}
