package jobs

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Tree lists a process and all its descendants, from /proc's children files.
func Tree(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", out[i]))
		for _, t := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", out[i], t.Name()))
			if err != nil {
				continue
			}
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					out = append(out, c)
				}
			}
		}
	}
	return out
}

// cpuMeter turns each job tree's CPU time into a rate between one
// reading and the next. Each reader (drift ps, the balancer) has its own
// meter, so that neither shortens the other's window; readings closer
// together than minWindow repeat the last rate (CPU time counts in 10 ms
// ticks: a short window reads as idle).
type cpuMeter struct {
	mu   sync.Mutex
	last map[int]sample // root pid → its last reading
}

const minWindow = time.Second

type sample struct {
	at    time.Time
	ticks uint64
	rate  float64 // over the window that ended at at
}

// read returns the CPU use of the tree rooted at pid (fraction of one
// core) since this meter's last reading of it, or since the tree began at
// since when there was none, and the tree's resident memory in bytes. A
// restored tree starts counting its CPU time from zero, so since is the
// start of its stint on this node.
func (c *cpuMeter) read(pid int, since time.Time) (cpu float64, rss uint64) {
	var ticks uint64
	for _, p := range Tree(pid) {
		t, r := procStat(p)
		ticks += t
		rss += r
	}
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[int]sample{}
	}
	prev, ok := c.last[pid]
	if !ok {
		prev = sample{at: since}
	}
	dt := now.Sub(prev.at)
	if ok && dt < minWindow {
		return prev.rate, rss
	}
	if dt > 0 && ticks >= prev.ticks {
		cpu = float64(ticks-prev.ticks) / 100 / dt.Seconds() // USER_HZ is 100 on Linux
	}
	c.last[pid] = sample{at: now, ticks: ticks, rate: cpu}
	return cpu, rss
}

// forget drops a tree that ended or left.
func (c *cpuMeter) forget(pid int) {
	c.mu.Lock()
	delete(c.last, pid)
	c.mu.Unlock()
}

// procStat reads a process's CPU ticks (user+system) and resident bytes.
func procStat(pid int) (ticks, rss uint64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	// Fields after the command name, which may hold spaces, in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return 0, 0
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	pages, _ := strconv.ParseUint(f[21], 10, 64)
	return ut + st, pages * uint64(os.Getpagesize())
}

// usage is the job's CPU use in percent of one core, by meter, and its
// resident memory, for drift ps.
func (r *runner) usage(meter *cpuMeter) (cpuPct float64, rss uint64) {
	cpu, rss := meter.read(r.pid, r.arrived)
	return cpu * 100, rss
}
