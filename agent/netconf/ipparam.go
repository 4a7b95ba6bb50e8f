package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// Mode is how the kernel's ip= parameter says to configure the network.
type Mode int

const (
	ModeAuto   Mode = iota // DHCP, falling back to link-local (ip=dhcp, or no ip=)
	ModeStatic             // the address given (ip=<client-ip>:...)
	ModeOff                // leave the network alone (ip=off)
)

func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeStatic:
		return "static"
	case ModeOff:
		return "off"
	}
	return "mode(" + strconv.Itoa(int(m)) + ")"
}

// IPParam is a parsed ip= kernel parameter:
//
//	ip=<client-ip>:<server-ip>:<gw-ip>:<netmask>:<hostname>:<device>:<autoconf>:<dns0-ip>:<dns1-ip>:<ntp0-ip>
//
// or one of ip=dhcp (also on, any, both, bootp, rarp) and ip=off (none).
type IPParam struct {
	Mode     Mode
	Addr     netip.Prefix // ModeStatic: the client address with its netmask
	Server   netip.Addr   // the boot server (kept, unused by netconf)
	Gateway  netip.Addr   // zero: no default route
	Hostname string       // "": not given (netconf does not set it: boot names the host)
	Device   string       // "": every wired interface (ModeAuto), the first wired one (ModeStatic)
	DNS      []netip.Addr
}

// ParseIPParam parses the value of the kernel's ip= parameter, with or
// without the "ip=" in front. "" is ModeAuto. A missing netmask is the
// address's class's, as the kernel does.
func ParseIPParam(s string) (IPParam, error) {
	v := strings.TrimPrefix(s, "ip=")
	switch v {
	case "", "dhcp", "on", "any", "both", "bootp", "rarp":
		return IPParam{Mode: ModeAuto}, nil
	case "off", "none":
		return IPParam{Mode: ModeOff}, nil
	}
	f := strings.Split(v, ":")
	if len(f) < 2 || len(f) > 10 {
		return IPParam{}, fmt.Errorf("ip=%s: want dhcp, off, or client-ip:server-ip:gw-ip:netmask:hostname:device:autoconf[:dns0:dns1:ntp0]", v)
	}
	f = append(f, make([]string, 10-len(f))...)
	var p IPParam
	var err error
	addr := func(i int, what string) netip.Addr {
		if err != nil || f[i] == "" {
			return netip.Addr{}
		}
		a, perr := netip.ParseAddr(f[i])
		if perr != nil || !a.Is4() {
			err = fmt.Errorf("ip=%s: %s %q: not an IPv4 address", v, what, f[i])
			return netip.Addr{}
		}
		return a
	}
	client := addr(0, "client-ip")
	p.Server = addr(1, "server-ip")
	p.Gateway = addr(2, "gw-ip")
	for i, what := range []string{7: "dns0-ip", 8: "dns1-ip"} {
		if what == "" {
			continue
		}
		if a := addr(i, what); a.IsValid() {
			p.DNS = append(p.DNS, a)
		}
	}
	addr(9, "ntp0-ip") // checked, unused
	if err != nil {
		return IPParam{}, err
	}
	p.Hostname = f[4]
	if p.Device = f[5]; len(p.Device) > 15 || strings.ContainsAny(p.Device, "/ ") {
		return IPParam{}, fmt.Errorf("ip=%s: device %q: not an interface name", v, p.Device)
	}
	switch f[6] {
	case "dhcp", "on", "any", "both", "bootp", "rarp":
		p.Mode = ModeAuto
		return p, nil
	case "", "off", "none":
		if !client.IsValid() {
			p.Mode = ModeOff
			if f[6] == "" {
				p.Mode = ModeAuto // nothing static given: configure automatically
			}
			return p, nil
		}
	default:
		return IPParam{}, fmt.Errorf("ip=%s: autoconf %q: want off, none, dhcp, on, any, both, bootp or rarp", v, f[6])
	}
	bits := classBits(client)
	if f[3] != "" {
		bits, err = maskBits(f[3])
		if err != nil {
			return IPParam{}, fmt.Errorf("ip=%s: netmask: %w", v, err)
		}
	}
	p.Mode = ModeStatic
	p.Addr = netip.PrefixFrom(client, bits)
	return p, nil
}

// maskBits reads a dotted netmask (255.255.255.0) or a prefix length (24).
func maskBits(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 32 {
			return 0, fmt.Errorf("%q: prefix length out of 1..32", s)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("%q: not a netmask", s)
	}
	b := a.As4()
	ones, size := net.IPMask(b[:]).Size()
	if size == 0 || ones == 0 {
		return 0, fmt.Errorf("%q: not a contiguous netmask", s)
	}
	return ones, nil
}

// classBits is the classful netmask the kernel assumes when none is given.
func classBits(a netip.Addr) int {
	switch b := a.As4()[0]; {
	case b < 128:
		return 8
	case b < 192:
		return 16
	}
	return 24
}
