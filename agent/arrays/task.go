package arrays

import (
	"slices"

	"github.com/driftcluster/drift/agent/procfs"
	"github.com/driftcluster/drift/agent/taskexec"
)

// TaskArg is the first argument that makes drift-job (or driftd) run as
// the wrapper of one task (taskexec.Run).
const TaskArg = taskexec.Arg

// result is what a task's wrapper, or the node that started it, records
// when a task ends.
type result = taskexec.Result

// waitsItsTurn reports whether the job whose init is pid has a wrapper
// ready for the SIGUSR2 that lets it run (taskexec.WaitingComm).
func waitsItsTurn(pid int) bool {
	if pid <= 0 {
		return false
	}
	var proc procfs.Proc
	pids, _ := proc.Tree(pid)
	return slices.ContainsFunc(pids, func(p int) bool { return proc.Comm(p) == taskexec.WaitingComm })
}
