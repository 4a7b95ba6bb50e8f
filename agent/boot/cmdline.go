// Package boot brings a node up from the kernel's hands: it reads the
// kernel command line, loads the modules for the hardware present and
// names the host. driftd runs it once at start.
package boot

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Role is what a node does in the cluster.
type Role string

const (
	RoleWorker Role = "worker"
	RoleHead   Role = "head"
)

// Options are the drift.* settings from the kernel command line.
type Options struct {
	Role    Role     // drift.role; zero: RoleWorker
	KeyHex  string   // drift.key: cluster key in hex; "": the key baked into the image
	Join    []string // drift.join=host:port,...
	Storage string   // drift.storage=9p://host:port or nfs://host/export
	DHCP    string   // drift.dhcp=server|proxy|off; "": automatic
	Range   string   // drift.range=CIDR: the addresses the head hands out; "": 10.77.0.0/24
	IP      string   // ip= (kernel static address syntax), passed through
	// Lab (drift.lab=1) opens the virtio-serial exec port drift-lab
	// drives (agent/labport); drift-lab sets it, a real machine never does.
	Lab bool
	// Enroll (head, drift.enroll=approve|auto|MAC,MAC...) is how the head
	// admits network-booted machines; "": approve.
	Enroll string
	// EnrollHead and EnrollFP (worker, drift.enroll_head=IP:PORT and
	// drift.enroll_fp=SHA256 hex, from the head's boot script) say where
	// a machine without the cluster key asks for it, and which TLS
	// certificate the head must show; "": no enrolment.
	EnrollHead string
	EnrollFP   string
	Unknown    []string // drift.* options this version does not know (logged)
}

// ParseCmdline reads the drift.* options (and ip=) from a kernel command
// line. Invalid values are errors that say what is allowed.
func ParseCmdline(cmdline string) (Options, error) {
	o := Options{Role: RoleWorker}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "drift.role":
			switch Role(v) {
			case RoleHead, RoleWorker:
				o.Role = Role(v)
			default:
				return o, fmt.Errorf("kernel command line: drift.role=%q: want head or worker", v)
			}
		case "drift.key":
			if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
				return o, fmt.Errorf("kernel command line: drift.key must be 64 hex digits (a 256-bit key)")
			}
			o.KeyHex = v
		case "drift.join":
			for _, s := range strings.Split(v, ",") {
				if s != "" {
					o.Join = append(o.Join, s)
				}
			}
		case "drift.storage":
			if !strings.HasPrefix(v, "9p://") && !strings.HasPrefix(v, "nfs://") {
				return o, fmt.Errorf("kernel command line: drift.storage=%q: want 9p://HOST:PORT or nfs://HOST/EXPORT", v)
			}
			o.Storage = v
		case "drift.dhcp":
			switch v {
			case "server", "proxy", "off":
				o.DHCP = v
			default:
				return o, fmt.Errorf("kernel command line: drift.dhcp=%q: want server, proxy or off", v)
			}
		case "drift.range":
			if p, err := netip.ParsePrefix(v); err != nil || !p.Addr().Is4() {
				return o, fmt.Errorf("kernel command line: drift.range=%q: want an IPv4 network such as 10.77.0.0/24", v)
			}
			o.Range = v
		case "ip":
			o.IP = v
		case "drift.lab":
			switch v {
			case "1":
				o.Lab = true
			case "0":
				o.Lab = false
			default:
				return o, fmt.Errorf("kernel command line: drift.lab=%q: want 1 (only drift-lab sets it) or 0", v)
			}
		case "drift.enroll":
			if err := checkEnrollMode(v); err != nil {
				return o, err
			}
			o.Enroll = v
		case "drift.enroll_head":
			if _, err := netip.ParseAddrPort(v); err != nil {
				return o, fmt.Errorf("kernel command line: drift.enroll_head=%q: want IP:PORT (the head's boot script sets it)", v)
			}
			o.EnrollHead = v
		case "drift.enroll_fp":
			if b, err := hex.DecodeString(v); err != nil || len(b) != 32 {
				return o, fmt.Errorf("kernel command line: drift.enroll_fp must be 64 hex digits (a SHA-256; the head's boot script sets it)")
			}
			o.EnrollFP = strings.ToLower(v)
		default:
			if strings.HasPrefix(k, "drift.") {
				o.Unknown = append(o.Unknown, f)
			}
		}
	}
	return o, nil
}

// checkEnrollMode accepts drift.enroll's values: approve, auto, or a
// comma-separated list of MAC addresses.
func checkEnrollMode(v string) error {
	switch v {
	case "approve", "auto":
		return nil
	case "":
		return fmt.Errorf("kernel command line: drift.enroll is empty: want approve, auto or a list of MAC addresses such as 52:54:00:12:34:56,52:54:00:12:34:57")
	}
	for _, m := range strings.Split(v, ",") {
		if hw, err := net.ParseMAC(m); err != nil || len(hw) != 6 {
			return fmt.Errorf("kernel command line: drift.enroll=%q: %q is not a MAC address; want approve, auto or a list of MAC addresses such as 52:54:00:12:34:56,52:54:00:12:34:57", v, m)
		}
	}
	return nil
}
