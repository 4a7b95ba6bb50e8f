//go:build linux

package migrate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// procRoot is where proc is mounted; tests keep the real one.
const procRoot = "/proc"

// tree returns the PIDs (thread-group ids) of pid and all its descendants,
// pid first, read from /proc/PID/task/*/children (children of every
// thread, as CRIU walks it).
func tree(pid int) ([]int, error) {
	seen := map[int]bool{pid: true}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		p := out[i]
		tasks, err := filepath.Glob(filepath.Join(procRoot, strconv.Itoa(p), "task", "*", "children"))
		if err != nil {
			return nil, err
		}
		if len(tasks) == 0 {
			if i == 0 {
				return nil, fmt.Errorf("process %d: %w", pid, os.ErrNotExist)
			}
			continue // exited meanwhile
		}
		for _, t := range tasks {
			b, err := os.ReadFile(t)
			if err != nil {
				continue // the thread exited
			}
			for _, f := range strings.Fields(string(b)) {
				c, err := strconv.Atoi(f)
				if err != nil || seen[c] {
					continue
				}
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// treeRSS is the resident anonymous memory of pid and its descendants,
// in bytes: what a dump copies (file pages stay in their files).
func treeRSS(pid int) (int64, error) {
	pids, err := tree(pid)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, p := range pids {
		b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(p), "statm"))
		if err != nil {
			continue // exited meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) < 3 {
			continue
		}
		resident, _ := strconv.ParseInt(f[1], 10, 64)
		shared, _ := strconv.ParseInt(f[2], 10, 64) // file-backed and shared pages
		total += max(0, resident-shared) * int64(os.Getpagesize())
	}
	return total, nil
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
