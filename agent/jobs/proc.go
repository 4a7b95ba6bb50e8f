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

// cpuMeter turns each job tree's CPU time into rates between one reading
// and the next. Each reader (drift ps, the balancer) has its own meter,
// so that neither shortens the other's window; readings closer together
// than minWindow repeat the last rates (CPU time counts in 10 ms ticks: a
// short window reads as idle).
type cpuMeter struct {
	mu   sync.Mutex
	last map[int]sample // root pid → its last reading
}

const minWindow = time.Second

type sample struct {
	at     time.Time
	ticks  uint64 // CPU time, in USER_HZ ticks
	wantNs uint64 // time its threads ran or waited to run, in ns
	use    usage  // over the window that ended at at
}

// usage is what a job tree used over a window.
type usage struct {
	CPU    float64 // cores it ran on (1 = one full core)
	Demand float64 // cores it wanted: it ran or waited on a run queue (a CPU-bound job wants 1 however busy the node)
	RSS    uint64  // resident bytes, now
}

// read returns what the tree rooted at pid used since this meter's last
// reading of it, or since the tree began at since when there was none. A
// restored tree starts counting from zero, so since is the start of its
// stint on this node.
func (c *cpuMeter) read(pid int, since time.Time) usage {
	var ticks, wantNs, rss uint64
	for _, p := range Tree(pid) {
		t, r := procStat(p)
		ticks += t
		rss += r
		wantNs += procWant(p)
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
		prev.use.RSS = rss
		return prev.use
	}
	u := usage{RSS: rss}
	if dt > 0 && ticks >= prev.ticks {
		u.CPU = float64(ticks-prev.ticks) / 100 / dt.Seconds() // USER_HZ is 100 on Linux
	}
	if dt > 0 && wantNs >= prev.wantNs { // a thread that ended takes its counts along
		u.Demand = float64(wantNs-prev.wantNs) / float64(dt.Nanoseconds())
	}
	c.last[pid] = sample{at: now, ticks: ticks, wantNs: wantNs, use: u}
	return u
}

// forget drops a tree that ended or left.
func (c *cpuMeter) forget(pid int) {
	c.mu.Lock()
	delete(c.last, pid)
	c.mu.Unlock()
}

// procWant is the time the threads of a process have spent running or
// waiting on a run queue, from /proc/PID/task/*/schedstat, in ns.
func procWant(pid int) uint64 {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var total uint64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		f := strings.Fields(string(b))
		if len(f) < 2 {
			continue
		}
		run, _ := strconv.ParseUint(f[0], 10, 64)
		wait, _ := strconv.ParseUint(f[1], 10, 64)
		total += run + wait
	}
	return total
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
	u := meter.read(r.pid, r.arrived)
	return u.CPU * 100, u.RSS
}
