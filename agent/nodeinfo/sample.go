package nodeinfo

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Sampler reads a node's Info from /proc. Its zero value samples the real
// /proc with no role, version, jobs or API port; set those fields before
// the first Sample. A Sampler is safe for concurrent use.
type Sampler struct {
	Proc    fs.FS                           // nil: os.DirFS("/proc")
	Role    string                          // copied into every sample
	Version string                          // copied into every sample
	APIPort int                             // copied into every sample
	Jobs    func() int                      // nil: no jobs
	Mode    func() (blocked, draining bool) // nil: neither
	Bench   func() float64                  // nil: MeasureSpeed

	mu       sync.Mutex
	speed    float64
	measured time.Time
}

// remeasure is how often an idle node measures its speed again. The
// best figure so far is kept: a measurement taken while the machine was
// busy (booting, serving, other VMs on the same host) only reads low.
const remeasure = time.Minute

// Sample returns the node's current Info. Files that are missing or
// unreadable leave their fields zero: a sample is always usable.
func (s *Sampler) Sample() Info {
	s.mu.Lock()
	if s.speed == 0 || time.Since(s.measured) > remeasure && (s.Jobs == nil || s.Jobs() == 0) {
		bench := s.Bench
		if bench == nil {
			bench = MeasureSpeed
		}
		s.speed = max(s.speed, bench())
		s.measured = time.Now()
	}
	s.mu.Unlock()
	proc := s.Proc
	if proc == nil {
		proc = os.DirFS("/proc")
	}
	i := Info{Role: s.Role, Version: s.Version, APIPort: s.APIPort, Speed: s.speed}
	if s.Mode != nil {
		i.Blocked, i.Draining = s.Mode()
	}
	if s.Jobs != nil {
		i.Jobs = s.Jobs()
	}
	eachLine(proc, "cpuinfo", func(k, v string) {
		switch k {
		case "processor":
			i.Cores++
		case "model name":
			if i.CPUModel == "" {
				i.CPUModel = Truncate(v, MaxModel)
			}
		case "cpu MHz":
			if i.MHz == 0 {
				f, _ := strconv.ParseFloat(v, 64)
				i.MHz = int(f + 0.5)
			}
		}
	})
	eachLine(proc, "meminfo", func(k, v string) {
		switch k {
		case "MemTotal":
			i.MemTotal = kB(v)
		case "MemAvailable":
			i.MemFree = kB(v)
		}
	})
	eachField(proc, "stat", func(k, v string) {
		switch k {
		case "procs_running":
			i.Runnable, _ = strconv.Atoi(v)
		case "btime":
			if sec, err := strconv.ParseInt(v, 10, 64); err == nil && sec > 0 {
				i.BootTime = time.Unix(sec, 0)
			}
		}
	})
	if b, err := fs.ReadFile(proc, "loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 0 {
			i.Load1, _ = strconv.ParseFloat(f[0], 64)
		}
	}
	return i
}

// eachLine calls fn with the key and value of every "key : value" line.
func eachLine(proc fs.FS, name string, fn func(k, v string)) {
	b, err := fs.ReadFile(proc, name)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok {
			fn(strings.TrimSpace(k), strings.TrimSpace(v))
		}
	}
}

// eachField calls fn with the first two fields of every line.
func eachField(proc fs.FS, name string, fn func(k, v string)) {
	b, err := fs.ReadFile(proc, name)
	if err != nil {
		return
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) >= 2 {
			fn(f[0], f[1])
		}
	}
}

// kB parses a meminfo value such as "24684084 kB" into bytes.
func kB(v string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimSuffix(v, " kB"), 10, 64)
	return n * 1024
}

// benchRounds is the integer work of one benchmark run; referenceNs is how
// long one run takes on the reference machine (an AMD EPYC core at 2.6 GHz,
// natively), so that machine measures 1.0.
const (
	benchRounds = 1 << 20
	referenceNs = 2_150_000
)

// MeasureSpeed runs a short, fixed integer benchmark (a few milliseconds)
// and returns the speed of one core relative to the reference machine:
// 2.0 is twice as fast. It keeps the best of several runs, so a busy
// moment costs little accuracy.
func MeasureSpeed() float64 {
	best := time.Duration(1<<63 - 1)
	for range 10 {
		start := time.Now()
		benchSink = benchWork(benchRounds)
		if d := time.Since(start); d < best {
			best = d
		}
	}
	return float64(referenceNs) / float64(max(best, time.Microsecond).Nanoseconds())
}

var benchSink uint64

// benchWork is xorshift and multiply rounds: pure integer ALU work that the
// compiler cannot fold away.
func benchWork(n int) uint64 {
	x := uint64(0x9E3779B97F4A7C15)
	var acc uint64
	for i := range n {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		acc += x * uint64(i|1)
	}
	return acc
}

// String is a one-line summary, for logs.
func (i Info) String() string {
	return fmt.Sprintf("cores=%d speed=%.2f load=%.2f run=%d memfree=%dMiB jobs=%d role=%s version=%s",
		i.Cores, i.Speed, i.Load1, i.Runnable, i.MemFree>>20, i.Jobs, i.Role, i.Version)
}
