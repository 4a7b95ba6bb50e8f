package lab

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// procRunning reports whether pid exists and is neither a zombie nor dead.
func procRunning(pid int) bool {
	if pid <= 0 {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z' && s[i+2] != 'X'
}

// qemuRunning reports whether pid is a running QEMU process; the command
// line check guards against a recycled PID.
func qemuRunning(pid int) bool {
	if !procRunning(pid) {
		return false
	}
	// While a process execs (ip netns exec becoming QEMU), its command
	// line reads empty for a moment.
	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && (len(cmdline) == 0 || strings.Contains(string(cmdline), "qemu-system"))
}

// waitGone waits until pid is no longer running, for at most d, and reports
// whether it is gone.
func waitGone(ctx context.Context, pid int, d time.Duration) bool {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for procRunning(pid) {
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// waitReaped waits until pid is gone from /proc (reaped, not just a
// zombie), for at most d.
func waitReaped(ctx context.Context, pid int, d time.Duration) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
