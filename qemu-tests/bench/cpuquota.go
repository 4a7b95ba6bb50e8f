package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// cpuQuota holds processes to a share of the host's CPU each, with a
// cgroup per process (cgroup v2, or v1's cpu controller), so that lab VMs
// behave like separate machines of equal speed instead of competing for
// the host's cores.
type cpuQuota struct {
	root string   // the hierarchy's root, where processes go back
	dirs []string // created, parents first
}

// limitCPU puts each pid into its own cgroup allowed share of one CPU
// (0.6 = 60%). Undo with release.
func limitCPU(name string, share float64, pids ...int) (*cpuQuota, error) {
	root, v2 := "/sys/fs/cgroup", true
	if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
		root, v2 = "/sys/fs/cgroup/cpu", false
	}
	q := &cpuQuota{root: root}
	base := filepath.Join(root, name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return nil, fmt.Errorf("cpu quota: %w (needs root and a cgroup cpu controller)", err)
	}
	q.dirs = append(q.dirs, base)
	if v2 {
		os.WriteFile(filepath.Join(root, "cgroup.subtree_control"), []byte("+cpu"), 0o644)
		if err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte("+cpu"), 0o644); err != nil {
			q.release()
			return nil, fmt.Errorf("cpu quota: enable the cpu controller: %w", err)
		}
	}
	const period = 100000
	quota := strconv.Itoa(int(share * period))
	for i, pid := range pids {
		d := filepath.Join(base, fmt.Sprintf("vm%d", i+1))
		if err := os.MkdirAll(d, 0o755); err != nil {
			q.release()
			return nil, fmt.Errorf("cpu quota: %w", err)
		}
		q.dirs = append(q.dirs, d)
		var err error
		if v2 {
			err = os.WriteFile(filepath.Join(d, "cpu.max"), []byte(quota+" "+strconv.Itoa(period)), 0o644)
		} else {
			os.WriteFile(filepath.Join(d, "cpu.cfs_period_us"), []byte(strconv.Itoa(period)), 0o644)
			err = os.WriteFile(filepath.Join(d, "cpu.cfs_quota_us"), []byte(quota), 0o644)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
		}
		if err != nil {
			q.release()
			return nil, fmt.Errorf("cpu quota for pid %d: %w", pid, err)
		}
	}
	return q, nil
}

// release moves any process left back to the root and removes the cgroups.
func (q *cpuQuota) release() {
	for i := len(q.dirs) - 1; i >= 0; i-- {
		procs, _ := os.ReadFile(filepath.Join(q.dirs[i], "cgroup.procs"))
		for _, p := range strings.Fields(string(procs)) {
			os.WriteFile(filepath.Join(q.root, "cgroup.procs"), []byte(p), 0o644)
		}
		os.Remove(q.dirs[i])
	}
}
