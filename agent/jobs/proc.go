package jobs

import (
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/procfs"
)

// proc is where jobs reads process trees from; tests keep the host's.
var proc procfs.Proc

// Tree lists a process and all its descendants; a process that is gone
// lists as itself alone.
func Tree(pid int) []int {
	pids, err := proc.Tree(pid)
	if err != nil {
		return []int{pid}
	}
	return pids
}

// cpuMeter turns each job tree's CPU time into rates between one reading
// and the next. Each reader (drift ps, the balancer) has its own meter,
// so that neither shortens the other's window; readings closer together
// than minWindow repeat the last one, memory included (CPU time counts in
// 10 ms ticks: a short window reads as idle).
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
	CPU    float64       // cores it ran on (1 = one full core)
	Demand float64       // cores it wanted: it ran or waited on a run queue (a CPU-bound job wants 1 however busy the node)
	RSS    uint64        // resident bytes, now (procfs.Usage.RSS)
	Anon   uint64        // resident bytes a dump would copy, now (procfs.Usage.Anon)
	Used   time.Duration // CPU time the tree's live processes have used, now
}

// read returns what the tree rooted at pid used since this meter's last
// reading of it, or since the tree began at since when there was none. A
// restored tree starts counting from zero, so since is the start of its
// stint on this node.
func (c *cpuMeter) read(pid int, since time.Time) usage {
	c.mu.Lock()
	prev, ok := c.last[pid]
	c.mu.Unlock()
	if ok && time.Since(prev.at) < minWindow {
		// The last reading stands: reading a tree (every thread's
		// children and schedstat) costs the node milliseconds, and the
		// balancer looks at every job start and end.
		return prev.use
	}
	tu, _ := proc.TreeUsage(pid) // a tree that is gone reads as zero
	ticks, wantNs := tu.Ticks, tu.WantNs
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[int]sample{}
	}
	prev, ok = c.last[pid]
	if !ok {
		prev = sample{at: since}
	}
	dt := now.Sub(prev.at)
	if ok && dt < minWindow {
		prev.use.RSS, prev.use.Anon = tu.RSS, tu.Anon
		return prev.use
	}
	u := usage{RSS: tu.RSS, Anon: tu.Anon, Used: time.Duration(ticks) * (time.Second / 100)}
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

// usage is the job's CPU use in percent of one core, by meter, and its
// resident memory, for drift ps.
func (r *runner) usage(meter *cpuMeter) (cpuPct float64, rss uint64) {
	u := meter.read(r.pid, r.arrived)
	return u.CPU * 100, u.RSS
}
