// Package boot brings a node up from the kernel's hands: it reads the
// kernel command line, loads the modules for the hardware present and
// names the host. driftd runs it once at start.
package boot

import (
	"encoding/hex"
	"fmt"
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
	Unknown []string // drift.* options this version does not know (logged)
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
		default:
			if strings.HasPrefix(k, "drift.") {
				o.Unknown = append(o.Unknown, f)
			}
		}
	}
	return o, nil
}
