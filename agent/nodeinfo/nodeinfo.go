// Package nodeinfo is what a drift node tells the rest of the cluster about
// itself: cores, CPU model and speed, memory, load, jobs, role, version and
// uptime. A Sampler reads it from /proc; Encode and Decode are its compact
// wire form, which membership gossips as memberlist node metadata (at most
// MaxSize bytes, memberlist's limit) and the API serves.
package nodeinfo

import (
	"math"
	"time"
)

// Info describes one node at one moment.
type Info struct {
	Cores    int       // online CPUs
	CPUModel string    // "model name" from /proc/cpuinfo, at most MaxModel bytes
	MHz      int       // current clock of the first CPU
	Speed    float64   // measured relative speed of one core (1.0: the reference machine)
	MemTotal uint64    // bytes
	MemFree  uint64    // bytes available to new processes (MemAvailable)
	Runnable int       // runnable tasks (procs_running), this agent's sampler included
	Load1    float64   // 1-minute load average
	Jobs     int       // drift jobs running on the node
	Role     string    // "head" or "worker", at most MaxRole bytes
	Version  string    // drift version, at most MaxVersion bytes
	BootTime time.Time // when the node booted (uptime = now - BootTime); zero if unknown
	APIPort  int       // TCP port of the node's agent API; 0 if it serves none
	Blocked  bool      // accepts no new jobs or migrations (drift block)
	Draining bool      // sends its jobs away (drift drain)
}

// Uptime is how long the node has been up at now, or 0 if BootTime is unknown.
func (i Info) Uptime(now time.Time) time.Duration {
	if i.BootTime.IsZero() || now.Before(i.BootTime) {
		return 0
	}
	return now.Sub(i.BootTime)
}

// Differs reports whether i and o differ enough to be worth gossiping:
// any change of identity, jobs or runnable tasks, load by more than 0.25,
// free memory by more than 5% of the total, speed by more than 10%.
func (i Info) Differs(o Info) bool {
	if i.Cores != o.Cores || i.CPUModel != o.CPUModel || i.Role != o.Role ||
		i.Version != o.Version || i.APIPort != o.APIPort || i.Jobs != o.Jobs ||
		i.Blocked != o.Blocked || i.Draining != o.Draining ||
		i.Runnable != o.Runnable || i.MemTotal != o.MemTotal || !i.BootTime.Equal(o.BootTime) {
		return true
	}
	if math.Abs(i.Load1-o.Load1) > 0.25 {
		return true
	}
	if i.MemTotal > 0 && absDiff(i.MemFree, o.MemFree) > i.MemTotal/20 {
		return true
	}
	if o.Speed > 0 && math.Abs(i.Speed-o.Speed)/o.Speed > 0.10 {
		return true
	}
	return i.MHz != o.MHz && (o.MHz == 0 || math.Abs(float64(i.MHz-o.MHz))/float64(o.MHz) > 0.10)
}

func absDiff(a, b uint64) uint64 {
	if a > b {
		return a - b
	}
	return b - a
}
