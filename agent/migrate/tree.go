//go:build linux

package migrate

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/driftcluster/drift/agent/procfs"
)

// procRoot is where proc is mounted; tests keep the real one.
const procRoot = "/proc"

// proc is where migrate reads process trees from.
var proc procfs.Proc

// tree returns the PIDs (thread-group ids) of pid and all its descendants,
// pid first.
func tree(pid int) ([]int, error) { return proc.Tree(pid) }

// treeRSS is the resident anonymous memory of pid and its descendants,
// in bytes: what a dump copies (file pages stay in their files).
func treeRSS(pid int) (int64, error) {
	u, err := proc.TreeUsage(pid)
	return int64(u.Anon), err
}

// signalTree sends sig to pid and every descendant, parents first. A
// process that is gone is not an error.
func signalTree(pid int, sig syscall.Signal) error {
	pids, err := tree(pid)
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range pids {
		if err := syscall.Kill(p, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
			errs = append(errs, fmt.Errorf("signal %d: %w", p, err))
		}
	}
	return errors.Join(errs...)
}
