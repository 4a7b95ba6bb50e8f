package netboot

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv6"
)

// The IPv6 wait of iPXE. iPXE configures a NIC with every configurator
// it has at once, DHCPv4 and IPv6, and boots only when all of them are
// done: on a network without an IPv6 router its router solicitations go
// unanswered and it waits for them to time out, about 16 s, before it
// fetches boot.ipxe (seen in the lab: DHCP done, then six solicitations,
// then the HTTP request). The head answers the solicitations of a machine
// it is network-booting with a router advertisement that offers nothing:
// router lifetime 0 (it is no router), no prefix, neither managed nor
// other configuration. iPXE then ends its IPv6 configuration at once, as
// RFC 4861 lets it. The answer goes to that machine only (unicast), and
// only to a machine that asked for boot options within bootingFor, so the
// other hosts of a LAN, and its real routers, never see it.

// RAConfig configures an RAResponder.
type RAConfig struct {
	Logger    *slog.Logger // nil: slog.Default()
	Interface string       // the interface the head serves network boot on (required)
	PXE       *PXE         // which machines are network-booting (required)
}

// RAResponder answers network-booting machines' IPv6 router
// solicitations with an empty router advertisement.
type RAResponder struct {
	cfg RAConfig
	log *slog.Logger

	mu       sync.Mutex
	answered map[string]time.Time // MAC: when it was last answered
}

// NewRAResponder returns a responder for cfg; it does nothing until Run.
func NewRAResponder(cfg RAConfig) *RAResponder {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &RAResponder{cfg: cfg, log: cfg.Logger.With("service", "netboot-ra", "iface", cfg.Interface), answered: map[string]time.Time{}}
}

// Run answers until ctx ends. It never fails the services it runs
// beside: where it cannot answer (no IPv6 on the head), it logs why, and
// network boot goes on, only slower, and waits for ctx.
func (r *RAResponder) Run(ctx context.Context) error {
	if err := r.serve(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("netboot ra: not answering router solicitations: iPXE clients wait about 16 s for an IPv6 router before they boot", "err", err)
		<-ctx.Done()
	}
	return nil
}

func (r *RAResponder) serve(ctx context.Context) error {
	ifi, err := net.InterfaceByName(r.cfg.Interface)
	if err != nil {
		return err
	}
	c, err := icmp.ListenPacket("ip6:ipv6-icmp", "::")
	if err != nil {
		return err
	}
	defer c.Close()
	p := c.IPv6PacketConn()
	var f ipv6.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv6.ICMPTypeRouterSolicitation)
	if err := p.SetICMPFilter(&f); err != nil {
		return fmt.Errorf("filter: %w", err)
	}
	if err := p.SetControlMessage(ipv6.FlagInterface|ipv6.FlagHopLimit, true); err != nil {
		return fmt.Errorf("control messages: %w", err)
	}
	// Router solicitations go to all-routers, which a host that is not a
	// router has not joined.
	if err := p.JoinGroup(ifi, &net.IPAddr{IP: net.IPv6linklocalallrouters}); err != nil {
		return fmt.Errorf("join ff02::2 on %s: %w", ifi.Name, err)
	}
	go func() { <-ctx.Done(); c.Close() }()
	r.log.Info("netboot ra: answering the router solicitations of machines that network-boot")
	buf := make([]byte, 1500)
	for {
		n, cm, src, err := p.ReadFrom(buf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if cm == nil || cm.IfIndex != ifi.Index || cm.HopLimit != 255 {
			continue // RFC 4861: a solicitation from off the link is not one
		}
		from, ok := src.(*net.IPAddr)
		if !ok {
			continue
		}
		mac := solicitorMAC(buf[:n], from.IP)
		if mac == nil || !r.cfg.PXE.Booting(mac) || !r.due(mac) {
			continue
		}
		ra := routerAdvertisement(ifi.HardwareAddr)
		dst := &net.IPAddr{IP: from.IP, Zone: ifi.Name}
		if _, err := p.WriteTo(ra, &ipv6.ControlMessage{HopLimit: 255, IfIndex: ifi.Index}, dst); err != nil {
			r.log.Warn("netboot ra: answer", "mac", mac.String(), "to", from.IP, "err", err)
			continue
		}
		r.log.Info("netboot ra: answered a network-booting machine's router solicitation (no IPv6 router here): it boots without waiting for one", "mac", mac.String(), "to", from.IP)
	}
}

// due reports whether mac may be answered now: once a second at most,
// whatever it sends.
func (r *RAResponder) due(mac net.HardwareAddr) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	if at, ok := r.answered[mac.String()]; ok && now.Sub(at) < time.Second {
		return false
	}
	for m, at := range r.answered {
		if now.Sub(at) > bootingFor {
			delete(r.answered, m)
		}
	}
	r.answered[mac.String()] = now
	return true
}

// solicitorMAC is the MAC of the machine that sent the router
// solicitation msg from src: its source link-layer address option, else
// the MAC an EUI-64 link-local address is made from; nil if neither, or
// if msg is not a router solicitation.
func solicitorMAC(msg []byte, src net.IP) net.HardwareAddr {
	const rsHeader = 8 // type, code, checksum, reserved
	if len(msg) < rsHeader || msg[0] != byte(ipv6.ICMPTypeRouterSolicitation) || msg[1] != 0 {
		return nil
	}
	for opts := msg[rsHeader:]; len(opts) >= 2; {
		l := int(opts[1]) * 8
		if l == 0 || l > len(opts) {
			return nil // malformed: RFC 4861 says drop it
		}
		if opts[0] == 1 && l >= 8 { // source link-layer address
			return net.HardwareAddr(append([]byte(nil), opts[2:8]...))
		}
		opts = opts[l:]
	}
	if ip := src.To16(); ip != nil && ip.IsLinkLocalUnicast() && ip[11] == 0xff && ip[12] == 0xfe {
		return net.HardwareAddr{ip[8] ^ 0x02, ip[9], ip[10], ip[13], ip[14], ip[15]}
	}
	return nil
}

// routerAdvertisement is an ICMPv6 router advertisement that offers
// nothing: hop limit unspecified, no managed or other configuration,
// router lifetime 0 (not a default router), reachable time and retrans
// timer unspecified; with our link-layer address as its one option. The
// kernel fills in the checksum.
func routerAdvertisement(mac net.HardwareAddr) []byte {
	b := make([]byte, 16, 16+8)
	b[0] = byte(ipv6.ICMPTypeRouterAdvertisement)
	binary.BigEndian.PutUint16(b[6:8], 0) // router lifetime
	if len(mac) == 6 {
		b = append(b, 1, 1)
		b = append(b, mac...)
	}
	return b
}
