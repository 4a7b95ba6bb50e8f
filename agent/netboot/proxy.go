package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// PXEPort is the PXE boot-server port: PXE clients send their
// proxyDHCP REQUEST there once another server gave them an address.
const PXEPort = 4011

// ProxyConfig configures a ProxyDHCP server.
type ProxyConfig struct {
	Logger    *slog.Logger // nil: slog.Default()
	Interface string       // the interface to serve on (required)
	PXE       *PXE         // what clients boot (required)
	// Addr is the head's address on Interface, asked for each reply (it
	// may change with the head's own DHCP lease). nil: the interface's
	// first IPv4 address that is not link-local.
	Addr func() netip.Addr
}

// ProxyDHCP is a proxyDHCP server (the PXE specification's proxy mode,
// dnsmasq's "dhcp-range=...,proxy"): on a network where another DHCP
// server hands out addresses, it answers only PXE and iPXE clients, with
// boot options and no address: DISCOVERs on port 67 get a proxy OFFER,
// REQUESTs on port 4011 an ACK.
type ProxyDHCP struct {
	cfg   ProxyConfig
	log   *slog.Logger
	drops *dropLog
}

// NewProxyDHCP returns a proxyDHCP server for cfg; it does nothing until Run.
func NewProxyDHCP(cfg ProxyConfig) *ProxyDHCP {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger.With("service", "proxy-dhcp", "iface", cfg.Interface)
	return &ProxyDHCP{cfg: cfg, log: log, drops: &dropLog{log: log, what: "proxy dhcp: packet dropped"}}
}

// Run serves ports 67 and 4011 on the interface until ctx ends, returning
// nil then. Sockets are opened on the calling goroutine.
func (s *ProxyDHCP) Run(ctx context.Context) error {
	ifname := s.cfg.Interface
	var conns []net.PacketConn
	for _, port := range []int{dhcpv4.ServerPort, PXEPort} {
		c, err := server4.NewIPv4UDPConn(ifname, &net.UDPAddr{Port: port})
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return fmt.Errorf("proxy dhcp: listen on %s port %d: %w", ifname, port, err)
		}
		conns = append(conns, c)
	}
	if s.cfg.Addr == nil {
		// A netlink socket opened here answers for this goroutine's
		// network namespace, whichever thread serves later.
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			conns[0].Close()
			conns[1].Close()
			return fmt.Errorf("proxy dhcp: netlink: %w", err)
		}
		defer h.Close()
		var mu sync.Mutex
		s.cfg.Addr = func() netip.Addr {
			mu.Lock()
			defer mu.Unlock()
			return interfaceAddr(h, ifname)
		}
	}
	s.log.Info("proxy dhcp: serving PXE clients", "ports", "67,4011")
	return s.Serve(ctx, conns[0], conns[1])
}

// Serve answers on conn67 (broadcast DISCOVERs) and conn4011 (unicast
// REQUESTs) until ctx ends, and closes both.
func (s *ProxyDHCP) Serve(ctx context.Context, conn67, conn4011 net.PacketConn) error {
	release := onDone(ctx, func() { conn67.Close(); conn4011.Close() })
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, c := range []net.PacketConn{conn67, conn4011} {
		wg.Go(func() {
			errs[i] = s.serveConn(ctx, c, i == 1)
			if errs[i] != nil {
				conn67.Close() // one socket failed: stop the other, the supervisor restarts us
				conn4011.Close()
			}
		})
	}
	wg.Wait()
	release()
	return errors.Join(errs...)
}

func (s *ProxyDHCP) serveConn(ctx context.Context, conn net.PacketConn, pxePort bool) error {
	buf := make([]byte, 4096)
	for {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("proxy dhcp: read: %w", err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.drop(peer, fmt.Errorf("malformed packet (%d bytes): %w", n, err))
			continue
		}
		server := s.addr()
		if !server.IsValid() {
			s.drop(peer, errors.New("this head has no IPv4 address on the interface yet"))
			continue
		}
		reply, err := proxyReply(s.cfg.PXE, req, pxePort, server)
		if errors.Is(err, ErrNotPXE) {
			continue // another client's DHCP: the LAN's server answers it
		}
		if err != nil {
			s.drop(peer, err)
			continue
		}
		if reply == nil {
			continue
		}
		dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
		if gi := addr4(req.GatewayIPAddr); gi.IsValid() {
			dst = &net.UDPAddr{IP: gi.AsSlice(), Port: dhcpv4.ServerPort}
		} else if pxePort {
			// The client has its address now: answer where it asked from.
			if u, ok := peer.(*net.UDPAddr); ok {
				dst = u
			}
		}
		if _, err := conn.WriteTo(reply.ToBytes(), dst); err != nil {
			s.log.Warn("proxy dhcp: send reply", "to", dst, "err", err)
			continue
		}
		s.log.Info("proxy dhcp: boot options sent", "mac", req.ClientHWAddr, "type", reply.MessageType(), "file", reply.BootFileName, "to", dst)
	}
}

func (s *ProxyDHCP) addr() netip.Addr {
	if s.cfg.Addr != nil {
		return s.cfg.Addr()
	}
	return interfaceAddr(&netlink.Handle{}, s.cfg.Interface)
}

// interfaceAddr is ifname's first IPv4 address that is not link-local;
// the zero Addr if it has none.
func interfaceAddr(h *netlink.Handle, ifname string) netip.Addr {
	link, err := h.LinkByName(ifname)
	if err != nil {
		return netip.Addr{}
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_V4)
	if err != nil {
		return netip.Addr{}
	}
	for _, a := range addrs {
		if ip := addr4(a.IP); ip.IsValid() && !ip.IsLinkLocalUnicast() {
			return ip
		}
	}
	return netip.Addr{}
}

func (s *ProxyDHCP) drop(peer net.Addr, err error) { s.drops.drop("from", peer, "why", err) }

// proxyReply is the proxyDHCP answer to req from server: on port 67 a
// DISCOVER gets an OFFER; on port 4011 (pxePort) a REQUEST or INFORM gets
// an ACK. Both carry boot options, the server identifier and no address
// (yiaddr 0). Clients that are not PXE or iPXE get ErrNotPXE; other
// messages on port 67 (a REQUEST of the LAN server's offer) get nil, nil.
// It is pure: no sockets, no clock.
func proxyReply(p *PXE, req *dhcpv4.DHCPv4, pxePort bool, server netip.Addr) (*dhcpv4.DHCPv4, error) {
	if req == nil {
		return nil, errors.New("no packet")
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, fmt.Errorf("opcode %v: not a client request", req.OpCode)
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, fmt.Errorf("hardware type %v with %d-byte address: only Ethernet is served", req.HWType, len(req.ClientHWAddr))
	}
	c, ok := parsePXE(req)
	if !ok {
		return nil, ErrNotPXE
	}
	var mt dhcpv4.MessageType
	switch t := req.MessageType(); {
	case !pxePort && t == dhcpv4.MessageTypeDiscover:
		mt = dhcpv4.MessageTypeOffer
	case pxePort && (t == dhcpv4.MessageTypeRequest || t == dhcpv4.MessageTypeInform):
		mt = dhcpv4.MessageTypeAck
	case !pxePort:
		return nil, nil // REQUEST, RELEASE... for the LAN's server
	default:
		return nil, fmt.Errorf("message type %s on port %d from %s: want REQUEST", t, PXEPort, req.ClientHWAddr)
	}
	mods, _, err := p.bootOptions(req, c, server, true)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", req.ClientHWAddr, err)
	}
	mods = append([]dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server.AsSlice())),
		dhcpv4.WithYourIP(net.IPv4zero),
	}, mods...)
	reply, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("build proxy %s: %w", mt, err)
	}
	p.record(req, c, addr4(req.ClientIPAddr))
	return reply, nil
}
