package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// nodeCPU is where a node's CPU time went over a stretch: to jobs (which
// run at nice 19, the "nice" column of /proc/stat), to everything else
// (the agent, CRIU, the kernel: user, system, irq and softirq), and to
// nothing (idle and iowait).
type nodeCPU struct {
	Jobs, Other, Idle time.Duration
}

// userHZ is the unit of /proc/stat (USER_HZ, 100 on every Linux
// architecture drift boots on).
const userHZ = 100

// parseProcStat reads the "cpu" line of /proc/stat: time since boot.
func parseProcStat(text string) (nodeCPU, error) {
	for line := range strings.SplitSeq(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 8 || f[0] != "cpu" {
			continue
		}
		var v [7]int64
		for i := range v {
			n, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				return nodeCPU{}, fmt.Errorf("bench: /proc/stat: %q: %w", line, err)
			}
			v[i] = n
		}
		tick := func(n int64) time.Duration { return time.Duration(n) * time.Second / userHZ }
		// user nice system idle iowait irq softirq
		return nodeCPU{Jobs: tick(v[1]), Other: tick(v[0] + v[2] + v[5] + v[6]), Idle: tick(v[3] + v[4])}, nil
	}
	return nodeCPU{}, fmt.Errorf("bench: /proc/stat has no cpu line")
}

// cpu reads every node's CPU times since boot, in the order of b.names;
// a node that cannot tell gets a zero value (and cpuSince then drops the
// stretch).
func (b *batch) cpu(ctx context.Context) []nodeCPU {
	out := make([]nodeCPU, len(b.names))
	for i := range b.names {
		text, err := b.execOn(ctx, i+1, "cat", "/proc/stat")
		if err != nil {
			return nil
		}
		if out[i], err = parseProcStat(text); err != nil {
			return nil
		}
	}
	return out
}

// cpuSince is each node's CPU times between two readings; nil when either
// is missing.
func cpuSince(before, after []nodeCPU) []nodeCPU {
	if len(before) == 0 || len(before) != len(after) {
		return nil
	}
	out := make([]nodeCPU, len(before))
	for i := range before {
		out[i] = nodeCPU{Jobs: after[i].Jobs - before[i].Jobs, Other: after[i].Other - before[i].Other, Idle: after[i].Idle - before[i].Idle}
	}
	return out
}

// cpuRow prints one stretch's CPU times, node by node.
func cpuRow(c []nodeCPU) string {
	var parts []string
	for _, n := range c {
		parts = append(parts, fmt.Sprintf("%5.1f / %4.1f / %4.1f", n.Jobs.Seconds(), n.Other.Seconds(), n.Idle.Seconds()))
	}
	return strings.Join(parts, ",  ")
}
