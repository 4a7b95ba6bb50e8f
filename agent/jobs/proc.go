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

// cpuSamples remembers each tree's last CPU time, to turn it into a rate.
var cpuSamples sync.Map // root pid → sample

type sample struct {
	at    time.Time
	ticks uint64
}

// sampleTree returns the CPU use of the tree rooted at pid since the last
// call (percent of one core) and its resident memory in bytes.
func sampleTree(pid int) (cpu float64, rss uint64) {
	var ticks uint64
	for _, p := range Tree(pid) {
		t, r := procStat(p)
		ticks += t
		rss += r
	}
	now := time.Now()
	if prev, ok := cpuSamples.Load(pid); ok {
		s := prev.(sample)
		if dt := now.Sub(s.at).Seconds(); dt > 0 && ticks >= s.ticks {
			cpu = float64(ticks-s.ticks) / 100 / dt * 100 // USER_HZ is 100 on Linux
		}
	}
	cpuSamples.Store(pid, sample{at: now, ticks: ticks})
	return cpu, rss
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
