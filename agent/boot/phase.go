package boot

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// The boot phases, in the order a node usually passes them. Each is
// logged once per boot, as "drift: boot phase=NAME uptime=SECONDS", so
// that make bench-boot can say where the time to ready goes.
const (
	PhaseInit       = "init"        // the agent's supervisor runs, started by drift-init, PID 1
	PhaseAgent      = "agent"       // the agent, driftd's child, runs
	PhaseModules    = "modules"     // the NIC drivers (and what ready needs) are loaded
	PhaseNIC        = "nic"         // the node's network interfaces exist
	PhaseAddress    = "address"     // the node has its first address (a DHCP lease, the head's own, static or link-local)
	PhaseMembership = "membership"  // membership runs on that address (the node has joined its cluster, alone or not)
	PhaseReady      = "ready"       // the ready line
	PhaseStorage    = "storage"     // /cluster is mounted
	PhaseAllModules = "all-modules" // every module the node loads at boot (CRIU's, file systems...) is loaded
)

// Phases lists the phase names in their usual order, for reports.
var Phases = []string{PhaseInit, PhaseAgent, PhaseModules, PhaseNIC, PhaseAddress, PhaseMembership, PhaseReady, PhaseStorage, PhaseAllModules}

// PhaseLog logs each boot phase once, with the time since the kernel
// started. It is safe for concurrent use; the zero value is not usable:
// set Event.
type PhaseLog struct {
	Event  func(format string, args ...any) // required: the console's Event
	Uptime func() (time.Duration, error)    // nil: Uptime (from /proc/uptime)

	mu   sync.Mutex
	seen map[string]bool
}

// Mark logs phase name, the first time only.
func (p *PhaseLog) Mark(name string) {
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[name] {
		return
	}
	if p.seen == nil {
		p.seen = map[string]bool{}
	}
	p.seen[name] = true
	up := p.Uptime
	if up == nil {
		up = Uptime
	}
	d, err := up()
	if err != nil {
		p.Event("boot phase=%s uptime=unknown (%v)", name, err)
		return
	}
	p.Event("boot phase=%s uptime=%.2f", name, d.Seconds())
}

// Uptime is the time since the kernel started, from /proc/uptime.
func Uptime() (time.Duration, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, fmt.Errorf("read uptime: %w", err)
	}
	return ParseUptime(b)
}

// ParseUptime reads the first field of /proc/uptime ("12.34 5.67").
func ParseUptime(b []byte) (time.Duration, error) {
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, fmt.Errorf("parse uptime %q: empty", b)
	}
	s, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil || s < 0 {
		return 0, fmt.Errorf("parse uptime %q: not a number of seconds", b)
	}
	return time.Duration(s * float64(time.Second)), nil
}

var phaseRE = regexp.MustCompile(`drift: boot phase=([a-z-]+) uptime=([0-9.]+)`)

// ParsePhase reads a console line that PhaseLog wrote and returns the
// phase and its time since kernel start.
func ParsePhase(line string) (name string, at time.Duration, ok bool) {
	m := phaseRE.FindStringSubmatch(line)
	if m == nil {
		return "", 0, false
	}
	s, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		return "", 0, false
	}
	return m[1], time.Duration(s * float64(time.Second)), true
}
