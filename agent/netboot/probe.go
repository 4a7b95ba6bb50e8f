package netboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/mdlayher/packet"
)

// Probing an address before it is offered (RFC 2131 section 4.4.1: the
// server SHOULD check that an address is not in use). A host with a static
// address on the segment (the lab's bridge, a printer, a PC set up by hand)
// answers an ARP request for it; the server then holds the address back
// for the pool's declineTime and offers the next one.
const (
	// DefaultProbeTimeout is how long a probe waits for an ARP answer: a
	// host on the segment answers within milliseconds, and every new
	// machine waits this long for its first address (its boot's critical
	// path).
	DefaultProbeTimeout = 100 * time.Millisecond
	// maxProbesPerDiscover bounds the probes one DISCOVER can cause; when
	// every one finds its address in use the DISCOVER goes unanswered
	// (the client asks again, and the addresses found stay held back).
	maxProbesPerDiscover = 4
	// probeBurst and probeRefill bound probing over time, so that a flood
	// of DISCOVERs from invented MACs keeps the server probing at most
	// probeTimeout of every probeRefill: past the budget an address is
	// offered unprobed (the client still checks it and DECLINEs it if
	// it is taken).
	probeBurst  = 16
	probeRefill = time.Second
)

// prober reports which host, if any, other than exclude (the client that
// is asking, which may still hold the address it asks for) uses addr.
type prober func(ctx context.Context, addr netip.Addr, exclude net.HardwareAddr) (net.HardwareAddr, error)

// probeBudget is a token bucket of probes: probeBurst at most, one more
// every probeRefill.
type probeBudget struct {
	tokens float64
	last   time.Time
}

func (b *probeBudget) take(now time.Time) bool {
	if b.last.IsZero() {
		b.tokens = probeBurst
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(probeBurst, b.tokens+d.Seconds()/probeRefill.Seconds())
	}
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// arpProber probes with an ARP request on ifname from the server's own
// address self, and waits up to timeout for a host to answer for addr.
func arpProber(ifname string, self netip.Addr, timeout time.Duration) prober {
	return func(ctx context.Context, addr netip.Addr, exclude net.HardwareAddr) (net.HardwareAddr, error) {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return nil, fmt.Errorf("probe %s: %w", addr, err)
		}
		c, err := packet.Listen(ifi, packet.Datagram, etherTypeARP, nil)
		if err != nil {
			return nil, fmt.Errorf("probe %s: arp socket on %s: %w", addr, ifname, err)
		}
		defer c.Close()
		deadline := time.Now().Add(timeout)
		if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
			deadline = dl
		}
		c.SetDeadline(deadline)
		req := arpRequestFor(ifi.HardwareAddr, self, addr)
		bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		if _, err := c.WriteTo(req, bcast); err != nil {
			return nil, fmt.Errorf("probe %s: send arp on %s: %w", addr, ifname, err)
		}
		buf := make([]byte, 128)
		for {
			n, _, err := c.ReadFrom(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil
			}
			if err != nil {
				return nil, fmt.Errorf("probe %s: read arp on %s: %w", addr, ifname, err)
			}
			if mac, ok := arpSenderOf(buf[:n], addr); ok && mac.String() != exclude.String() && mac.String() != ifi.HardwareAddr.String() {
				return mac, nil
			}
		}
	}
}

const etherTypeARP = 0x0806

// arpRequestFor is an Ethernet/IPv4 ARP request (RFC 826) from sha/spa
// asking who has tpa.
func arpRequestFor(sha net.HardwareAddr, spa, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // hardware: Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // protocol: IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], 1) // request
	copy(b[8:14], sha)
	s, t := spa.As4(), tpa.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

// arpSenderOf returns the sender hardware address of an Ethernet/IPv4 ARP
// packet whose sender protocol address is addr: a host that answers for
// addr, or announces it.
func arpSenderOf(b []byte, addr netip.Addr) (net.HardwareAddr, bool) {
	if len(b) < 28 || binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
		return nil, false
	}
	if netip.AddrFrom4([4]byte(b[14:18])) != addr {
		return nil, false
	}
	return net.HardwareAddr(slices.Clone(b[8:14])), true
}
