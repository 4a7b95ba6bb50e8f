package lab

import (
	"strings"
)

// ReadyPrefix starts the line driftd prints on the console once a node is up:
//
//	drift: ready node=NAME addr=IP role=ROLE version=V
const ReadyPrefix = "drift: ready "

// Ready is a node's parsed ready line.
type Ready struct {
	Node    int    // node number in the lab (1 is the head); 0 when parsed outside a lab
	Name    string // hostname, drift-<last 3 MAC bytes>
	Addr    string // IPv4 address, or "none"
	Role    string // "head" or "worker"
	Version string // drift version
	Line    string // the console line as printed
}

// ParseReady parses a console line holding a ready event. The event may sit
// after other text on the line (a kernel message printed without a newline);
// unknown keys are ignored so that driftd can add fields. It reports false
// for lines that are not ready events or lack a node name.
func ParseReady(line string) (Ready, bool) {
	line = strings.TrimRight(line, "\r\n")
	i := strings.Index(line, ReadyPrefix)
	if i < 0 {
		return Ready{}, false
	}
	r := Ready{Line: line[i:]}
	for _, f := range strings.Fields(line[i+len(ReadyPrefix):]) {
		k, v, ok := strings.Cut(f, "=")
		if !ok {
			continue
		}
		switch k {
		case "node":
			r.Name = v
		case "addr":
			r.Addr = v
		case "role":
			r.Role = v
		case "version":
			r.Version = v
		}
	}
	if r.Name == "" {
		return Ready{}, false
	}
	return r, true
}
