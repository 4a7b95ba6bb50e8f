package netconf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/mdlayher/packet"
)

// RFC 3927 section 9 constants.
const (
	probeWait        = 1 * time.Second // initial random delay
	probeNum         = 3
	probeMin         = 1 * time.Second
	probeMax         = 2 * time.Second
	announceWait     = 2 * time.Second // delay before announcing
	announceNum      = 2
	announceInterval = 2 * time.Second
	maxConflicts     = 10
	rateLimitWait    = 60 * time.Second
	defendInterval   = 10 * time.Second
)

// linkLocalNet is where link-local addresses live; linkLocalGen picks in
// 169.254.1.0 - 169.254.254.255 (the first and last /24 are reserved).
var linkLocalNet = netip.MustParsePrefix("169.254.0.0/16")

// linkLocalGen is RFC 3927's pseudo-random generator, seeded from the MAC
// so that a host picks the same sequence (and usually keeps its address)
// every boot, while different hosts pick differently.
type linkLocalGen struct{ r *rand.Rand }

func newLinkLocalGen(mac net.HardwareAddr) *linkLocalGen {
	h := fnv.New64a()
	h.Write(mac)
	return &linkLocalGen{r: rand.New(rand.NewPCG(h.Sum64(), 0x3927))}
}

func (g *linkLocalGen) next() netip.Addr {
	n := g.r.IntN(254 * 256)
	return netip.AddrFrom4([4]byte{169, 254, byte(1 + n/256), byte(n % 256)})
}

// arpPacket is an Ethernet/IPv4 ARP packet (RFC 826).
type arpPacket struct {
	op       uint16 // 1 request, 2 reply
	sha, tha net.HardwareAddr
	spa, tpa netip.Addr
}

const (
	arpRequest = 1
	arpReply   = 2
	etherARP   = 0x0806
)

func (p arpPacket) marshal() []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], 1)      // Ethernet
	binary.BigEndian.PutUint16(b[2:], 0x0800) // IPv4
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], p.op)
	copy(b[8:14], p.sha)
	spa, tpa := p.spa.As4(), p.tpa.As4()
	copy(b[14:18], spa[:])
	copy(b[18:24], p.tha)
	copy(b[24:28], tpa[:])
	return b
}

func parseARP(b []byte) (arpPacket, error) {
	if len(b) < 28 {
		return arpPacket{}, fmt.Errorf("arp packet of %d bytes: want 28", len(b))
	}
	if binary.BigEndian.Uint16(b[0:]) != 1 || binary.BigEndian.Uint16(b[2:]) != 0x0800 || b[4] != 6 || b[5] != 4 {
		return arpPacket{}, errors.New("arp packet: not Ethernet/IPv4")
	}
	return arpPacket{
		op:  binary.BigEndian.Uint16(b[6:]),
		sha: net.HardwareAddr(b[8:14:14]),
		spa: netip.AddrFrom4([4]byte(b[14:18])),
		tha: net.HardwareAddr(b[18:24:24]),
		tpa: netip.AddrFrom4([4]byte(b[24:28])),
	}, nil
}

// conflicts reports whether p, seen while we hold or probe addr, says
// another host wants it: it uses addr as its sender address, or (while
// probing) it probes for addr too.
func (p arpPacket) conflicts(addr netip.Addr, ours net.HardwareAddr, probing bool) bool {
	if p.sha.String() == ours.String() {
		return false
	}
	if p.spa == addr {
		return true
	}
	return probing && p.op == arpRequest && p.spa.IsUnspecified() && p.tpa == addr
}

// arpConn sends and receives ARP on one interface over an AF_PACKET socket.
type arpConn struct {
	c   *packet.Conn
	mac net.HardwareAddr
}

func dialARP(ifi *net.Interface) (*arpConn, error) {
	c, err := packet.Listen(ifi, packet.Datagram, etherARP, nil)
	if err != nil {
		return nil, fmt.Errorf("arp socket on %s: %w", ifi.Name, err)
	}
	return &arpConn{c: c, mac: ifi.HardwareAddr}, nil
}

func (a *arpConn) Close() error { return a.c.Close() }

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// probe sends an ARP probe for addr: sender address 0.0.0.0.
func (a *arpConn) probe(addr netip.Addr) error {
	return a.send(arpPacket{op: arpRequest, sha: a.mac, spa: netip.IPv4Unspecified(), tha: make(net.HardwareAddr, 6), tpa: addr})
}

// announce sends an ARP announcement: a request from addr for addr.
func (a *arpConn) announce(addr netip.Addr) error {
	return a.send(arpPacket{op: arpRequest, sha: a.mac, spa: addr, tha: make(net.HardwareAddr, 6), tpa: addr})
}

func (a *arpConn) send(p arpPacket) error {
	if _, err := a.c.WriteTo(p.marshal(), &packet.Addr{HardwareAddr: broadcastMAC}); err != nil {
		return fmt.Errorf("send arp: %w", err)
	}
	return nil
}

// read returns the next well-formed ARP packet, or an error when the
// deadline passes or the socket closes. Malformed packets are skipped.
func (a *arpConn) read(deadline time.Time) (arpPacket, error) {
	if err := a.c.SetReadDeadline(deadline); err != nil {
		return arpPacket{}, err
	}
	buf := make([]byte, 128)
	for {
		n, _, err := a.c.ReadFrom(buf)
		if err != nil {
			return arpPacket{}, err
		}
		if p, err := parseARP(buf[:n]); err == nil {
			return p, nil
		}
	}
}

// errConflict means another host answered for (or probed) the address.
var errConflict = errors.New("address in use")

// watch listens until deadline and returns errConflict if a packet says
// another host wants addr; nil when the deadline passes quietly.
func (a *arpConn) watch(ctx context.Context, addr netip.Addr, probing bool, deadline time.Time) error {
	for {
		p, err := a.read(deadline)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read arp: %w", err)
		}
		if p.conflicts(addr, a.mac, probing) {
			return fmt.Errorf("%s: %w by %s", addr, errConflict, p.sha)
		}
	}
}

// jitter is a random duration in [min, max).
func jitter(min, max time.Duration) time.Duration {
	return min + rand.N(max-min)
}

// probeAddr runs RFC 3927's probe for addr: a random wait, probeNum
// probes at random intervals, then announceWait of listening. It returns
// errConflict (wrapped) if another host holds or probes addr.
func (a *arpConn) probeAddr(ctx context.Context, addr netip.Addr) error {
	if err := a.watch(ctx, addr, true, time.Now().Add(jitter(0, probeWait))); err != nil {
		return err
	}
	for i := range probeNum {
		if err := a.probe(addr); err != nil {
			return err
		}
		wait := jitter(probeMin, probeMax)
		if i == probeNum-1 {
			wait = announceWait
		}
		if err := a.watch(ctx, addr, true, time.Now().Add(wait)); err != nil {
			return err
		}
	}
	return nil
}
