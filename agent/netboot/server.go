// Package netboot holds the head node's network-boot services. This part
// is the DHCPv4 server that hands out addresses on a network that has no
// DHCP server of its own (the lab, a bare switch): it picks a range
// (10.77.0.0/24 unless told otherwise), remembers its leases across agent
// restarts, and stands aside when another server already answers. driftd
// runs it on the head (drift.role=head) unless drift.dhcp=off.
package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
)

// DHCPConfig configures a DHCPServer.
type DHCPConfig struct {
	Logger *slog.Logger // nil: slog.Default()
	// Interface is the network interface to serve on (required).
	Interface string
	// Range is the subnet addresses are handed out from, /16 to /30. The
	// server's own address is the interface's address inside Range; if the
	// interface has none there, Run assigns it the range's first host
	// address (.1 of 10.77.0.0/24) and logs that it did. Zero: 10.77.0.0/24.
	Range netip.Prefix
	// LeaseTime is how long an ACKed address is the client's; clients renew
	// at half of it. Zero: one hour (short enough that a machine that left
	// gives its address back soon, long enough that the head's restarts
	// go unnoticed).
	LeaseTime time.Duration
	// LeaseFile is where leases are kept across agent restarts, as JSON,
	// replaced atomically on every change. "": in memory only.
	LeaseFile string
	// Router is sent as the router option. Zero: no router option (a bare
	// switch has no router).
	Router netip.Addr
	// DNS servers to send. nil: no DNS option.
	DNS []netip.Addr
	// DetectTimeout is how long Run listens for another DHCP server's
	// OFFER before serving (three tries). Zero: 6 s, so that a busy server
	// or a slow machine is not taken for none. Negative: do not look.
	DetectTimeout time.Duration
	// ProbeTimeout is how long the server waits for an ARP answer when it
	// probes an address before OFFERing it for the first time to a client
	// (an address some host answers for is held back and the next one
	// offered). Zero: DefaultProbeTimeout. Negative: do not probe.
	ProbeTimeout time.Duration
}

// DefaultRange is the subnet a head serves when none is configured.
var DefaultRange = netip.MustParsePrefix("10.77.0.0/24")

// DefaultLeaseTime is the lease time when none is configured.
const DefaultLeaseTime = time.Hour

// ErrOtherServer is what Run's error is (errors.Is) when another DHCP
// server answered on the interface: this server hands out no addresses
// there. The error is an *OtherServerError naming the server.
var ErrOtherServer = errors.New("another DHCP server answered")

// OtherServerError reports the DHCP server that answered Run's DISCOVER.
type OtherServerError struct {
	Interface string
	Server    netip.Addr // its server identifier (or the OFFER's source)
}

func (e *OtherServerError) Error() string {
	return fmt.Sprintf("dhcp server on %s: another DHCP server answered at %s: not serving addresses", e.Interface, e.Server)
}

// Is makes errors.Is(err, ErrOtherServer) true.
func (e *OtherServerError) Is(target error) bool { return target == ErrOtherServer }

// DHCPServer hands out addresses on one interface. Create it with
// NewDHCPServer and call Run; Leases and ServerAddr may be called from any
// goroutine.
type DHCPServer struct {
	cfg DHCPConfig
	log *slog.Logger

	mu         sync.Mutex
	table      *leaseTable
	pool       *pool
	serverAddr netip.Addr
	drops      dropLimiter
	pxe        atomic.Pointer[PXE] // boot options for PXE clients; nil: none (SetPXE, pxe.go)

	// probe checks an address before it is first offered; nil: Run sets
	// an ARP prober (tests set a fake before Run).
	probe  prober
	budget probeBudget // touched only by the serving goroutine
}

// NewDHCPServer returns a server for cfg; it does nothing until Run.
func NewDHCPServer(cfg DHCPConfig) *DHCPServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if !cfg.Range.IsValid() {
		cfg.Range = DefaultRange
	}
	if cfg.LeaseTime <= 0 {
		cfg.LeaseTime = DefaultLeaseTime
	}
	if cfg.DetectTimeout == 0 {
		cfg.DetectTimeout = 6 * time.Second
	}
	if cfg.ProbeTimeout == 0 {
		cfg.ProbeTimeout = DefaultProbeTimeout
	}
	return &DHCPServer{cfg: cfg, log: cfg.Logger.With("service", "dhcp-server", "iface", cfg.Interface), table: newLeaseTable()}
}

// ServerAddr is the server's own address once Run serves; zero before.
func (s *DHCPServer) ServerAddr() netip.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.serverAddr
}

// Leases lists the bound leases (live and expired-but-remembered), by address.
func (s *DHCPServer) Leases() []Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.table.leases()
}

// Run brings the interface up, listens for another DHCP server (returning
// an *OtherServerError if one answers), makes sure the interface has an
// address in the range, loads the lease file and serves until ctx ends,
// returning nil then. It opens every socket on the calling goroutine, so a
// caller locked to an OS thread in another network namespace serves there.
func (s *DHCPServer) Run(ctx context.Context) error {
	ifname := s.cfg.Interface
	link, err := netlink.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("dhcp server: interface %q: %w", ifname, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("dhcp server: bring %s up: %w", ifname, err)
	}
	if s.cfg.DetectTimeout > 0 {
		other, err := detectServer(ctx, ifname, s.cfg.DetectTimeout)
		if err != nil {
			return fmt.Errorf("dhcp server on %s: look for another server: %w", ifname, err)
		}
		if other.IsValid() {
			return &OtherServerError{Interface: ifname, Server: other}
		}
	}
	self, err := s.ownAddress(link)
	if err != nil {
		return err
	}
	p, err := newPool(s.cfg.Range, self, s.cfg.LeaseTime)
	if err != nil {
		return fmt.Errorf("dhcp server on %s: %w", ifname, err)
	}
	p.router, p.dns = s.cfg.Router, s.cfg.DNS
	table := newLeaseTable()
	if s.cfg.LeaseFile != "" {
		skipped, err := table.loadLeases(s.cfg.LeaseFile, p)
		if err != nil {
			// A corrupt file must not keep the head from serving: start
			// empty, and say so.
			s.log.Warn("dhcp server: lease file unreadable, starting with no leases", "err", err)
		}
		for _, sk := range skipped {
			s.log.Warn("dhcp server: lease file entry skipped", "entry", sk)
		}
	}
	conn, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: dhcpv4.ServerPort})
	if err != nil {
		return fmt.Errorf("dhcp server: listen on %s port %d: %w", ifname, dhcpv4.ServerPort, err)
	}
	if s.probe == nil && s.cfg.ProbeTimeout > 0 {
		s.probe = arpProber(ifname, self, s.cfg.ProbeTimeout)
	}
	s.mu.Lock()
	s.pool, s.table, s.serverAddr = p, table, self
	s.mu.Unlock()
	s.log.Info("dhcp server: serving", "addr", self, "range", p.prefix, "lease", s.cfg.LeaseTime, "leases", len(table.leases()))

	// server4.Server.Serve starts an unowned goroutine per packet; this
	// loop handles packets one at a time instead, so a flood costs one
	// goroutine and bounded work per packet.
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		conn.Close()
	})
	err = s.serve(ctx, conn)
	close(stop)
	wg.Wait()
	return err
}

func (s *DHCPServer) serve(ctx context.Context, conn net.PacketConn) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp server on %s: read: %w", s.cfg.Interface, err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.drop(peer, fmt.Errorf("malformed packet (%d bytes): %w", n, err))
			continue
		}
		s.handlePacket(ctx, conn, peer, req, time.Now())
	}
}

// handlePacket runs the handler, probes a newly offered address, persists
// leases and sends the reply.
func (s *DHCPServer) handlePacket(ctx context.Context, conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4, now time.Time) {
	s.mu.Lock()
	var before entry
	if len(req.ClientHWAddr) == 6 {
		if e := s.table.byMAC[req.ClientHWAddr.String()]; e != nil {
			before = *e
		}
	}
	reply, changed, herr := s.table.handle(s.pool, req, now)
	s.mu.Unlock()
	reply, changed, herr = s.probeOffer(ctx, req, before, reply, changed, herr, now)
	s.mu.Lock()
	var after entry
	if e := s.table.byMAC[before.mac]; before.mac != "" && e != nil {
		after = *e
	}
	var data []byte
	var merr error
	if changed && s.cfg.LeaseFile != "" {
		data, merr = s.table.marshalLeases()
	}
	s.mu.Unlock()
	if herr != nil {
		s.drop(peer, herr)
	}
	if merr != nil {
		s.log.Error("dhcp server: encode leases", "err", merr)
	} else if data != nil {
		if err := writeFileAtomic(s.cfg.LeaseFile, data); err != nil {
			s.log.Error("dhcp server: save leases", "err", err)
		}
	}
	if reply == nil {
		return
	}
	s.addBootOptions(req, reply)
	dst := replyDest(req, reply)
	if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
		s.log.Warn("dhcp server: send reply", "to", dst, "type", reply.MessageType(), "err", err)
		return
	}
	mac := req.ClientHWAddr.String()
	s.log.Debug("dhcp server: replied", "type", reply.MessageType(), "mac", mac, "yiaddr", reply.YourIPAddr, "to", dst)
	if yi := addr4(reply.YourIPAddr); reply.MessageType() == dhcpv4.MessageTypeAck && yi.IsValid() {
		if before.state == stateBound && before.addr == yi && !before.expired(now) {
			s.log.Debug("dhcp server: lease renewed", "mac", mac, "addr", yi)
		} else {
			s.log.Info("dhcp server: lease", "mac", mac, "addr", yi, "hostname", after.hostname)
		}
	}
}

// probeOffer checks, when reply OFFERs an address the client did not hold
// or have offered before, that no other host answers for it; if one does,
// the address is held back and the DISCOVER answered again with the next
// one, up to maxProbesPerDiscover times (after that, no OFFER this time).
// Past the probe budget, or when probing fails, the OFFER goes as it is.
func (s *DHCPServer) probeOffer(ctx context.Context, req *dhcpv4.DHCPv4, before entry, reply *dhcpv4.DHCPv4, changed bool, herr error, now time.Time) (*dhcpv4.DHCPv4, bool, error) {
	if s.probe == nil {
		return reply, changed, herr
	}
	for range maxProbesPerDiscover {
		if reply == nil || reply.MessageType() != dhcpv4.MessageTypeOffer {
			return reply, changed, herr
		}
		a := addr4(reply.YourIPAddr)
		if !a.IsValid() || before.mac != "" && before.addr == a {
			return reply, changed, herr // the client's own lease or reservation
		}
		if !s.budget.take(now) {
			s.log.Debug("dhcp server: probe budget spent; offering unprobed", "addr", a)
			return reply, changed, herr
		}
		by, err := s.probe(ctx, a, req.ClientHWAddr)
		if err != nil {
			s.log.Warn("dhcp server: probe before offer", "addr", a, "err", err)
			return reply, changed, herr
		}
		if by == nil {
			return reply, changed, herr
		}
		s.log.Warn("dhcp server: address in use by a host it was not leased to: holding it back", "addr", a, "mac", by.String(), "for", s.pool.declineTime)
		s.mu.Lock()
		s.table.holdBack(s.pool, a, now)
		var c bool
		reply, c, herr = s.table.handle(s.pool, req, now)
		changed = changed || c
		s.mu.Unlock()
	}
	if reply != nil && reply.MessageType() == dhcpv4.MessageTypeOffer {
		s.mu.Lock()
		if e := s.table.byAddr[addr4(reply.YourIPAddr)]; e != nil && e.state == stateOffered {
			s.table.remove(e)
		}
		s.mu.Unlock()
		return nil, changed, fmt.Errorf("DISCOVER from %s: %d addresses in a row in use by other hosts; not offering an unprobed one", req.ClientHWAddr, maxProbesPerDiscover)
	}
	return reply, changed, herr
}

// replyDest is where RFC 2131 section 4.1 says a reply goes: the relay,
// else the client's configured address, else broadcast (we cannot unicast
// to an address the client does not hold yet without writing its ARP
// entry ourselves).
func replyDest(req, reply *dhcpv4.DHCPv4) *net.UDPAddr {
	if gi := addr4(req.GatewayIPAddr); gi.IsValid() {
		return &net.UDPAddr{IP: gi.AsSlice(), Port: dhcpv4.ServerPort}
	}
	if ci := addr4(req.ClientIPAddr); ci.IsValid() && reply.MessageType() != dhcpv4.MessageTypeNak {
		return &net.UDPAddr{IP: ci.AsSlice(), Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// drop logs a dropped packet, at most dropBurst per minute (a flood must
// not flood the console too).
func (s *DHCPServer) drop(peer net.Addr, err error) {
	s.mu.Lock()
	ok, suppressed := s.drops.allow(time.Now())
	s.mu.Unlock()
	if suppressed > 0 {
		s.log.Warn("dhcp server: more packets dropped", "count", suppressed)
	}
	if ok {
		s.log.Warn("dhcp server: packet dropped", "from", peer, "why", err)
	}
}

const dropBurst = 20

// dropLimiter allows dropBurst log lines a minute and counts the rest.
type dropLimiter struct {
	start      time.Time
	n          int
	suppressed int
}

func (d *dropLimiter) allow(now time.Time) (ok bool, suppressed int) {
	if now.Sub(d.start) >= time.Minute {
		suppressed, d.suppressed = d.suppressed, 0
		d.start, d.n = now, 0
	}
	if d.n < dropBurst {
		d.n++
		return true, suppressed
	}
	d.suppressed++
	return false, suppressed
}

// ownAddress returns the interface's address inside the range, assigning
// the range's first host address when it has none.
func (s *DHCPServer) ownAddress(link netlink.Link) (netip.Addr, error) {
	ifname := s.cfg.Interface
	addrs, err := netlink.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp server: addresses of %s: %w", ifname, err)
	}
	rng := s.cfg.Range.Masked()
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && rng.Contains(ip.Unmap()) {
			return ip.Unmap(), nil
		}
	}
	self := rng.Addr().Next()
	nl := &netlink.Addr{IPNet: &net.IPNet{IP: self.AsSlice(), Mask: net.CIDRMask(rng.Bits(), 32)}}
	if err := netlink.AddrAdd(link, nl); err != nil {
		return netip.Addr{}, fmt.Errorf("dhcp server: assign %s/%d to %s: %w", self, rng.Bits(), ifname, err)
	}
	s.log.Info("dhcp server: interface had no address in the range: assigned one", "addr", netip.PrefixFrom(self, rng.Bits()))
	return self, nil
}

// detectServer sends a DISCOVER from ifname and waits up to wait for an
// OFFER. It returns the answering server's address, or the zero Addr if
// none answered.
func detectServer(ctx context.Context, ifname string, wait time.Duration) (netip.Addr, error) {
	// Two DISCOVERs: one after wait/3, the second waits 2*wait/3.
	c, err := nclient4.New(ifname, nclient4.WithTimeout(wait/3), nclient4.WithRetry(2))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	offer, err := c.DiscoverOffer(ctx)
	if errors.Is(err, nclient4.ErrNoResponse) {
		return netip.Addr{}, nil
	}
	if err != nil {
		return netip.Addr{}, err
	}
	if a := addr4(offer.ServerIdentifier()); a.IsValid() {
		return a, nil
	}
	if a := addr4(offer.ServerIPAddr); a.IsValid() {
		return a, nil
	}
	return netip.IPv4Unspecified(), nil
}
