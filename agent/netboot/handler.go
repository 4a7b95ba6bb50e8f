package netboot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// handle answers one DHCP request against the lease table at time now. It
// is a pure function of (request, table, now): no sockets, no clock. It
// returns the reply to send (nil: none), whether the bound leases changed
// (the caller persists them), and, when the packet is dropped, why (for the
// log). No packet that dhcpv4.FromBytes accepts makes it panic, and the
// work it does is bounded by the pool's size.
func (t *leaseTable) handle(p *pool, req *dhcpv4.DHCPv4, now time.Time) (reply *dhcpv4.DHCPv4, changed bool, err error) {
	if req == nil {
		return nil, false, errors.New("no packet")
	}
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, false, fmt.Errorf("opcode %v: not a client request", req.OpCode)
	}
	if req.HWType != iana.HWTypeEthernet || len(req.ClientHWAddr) != 6 {
		return nil, false, fmt.Errorf("hardware type %v with %d-byte address: only Ethernet is served", req.HWType, len(req.ClientHWAddr))
	}
	if hw := req.ClientHWAddr; hw[0]&1 == 1 || hw.String() == "00:00:00:00:00:00" {
		return nil, false, fmt.Errorf("client hardware address %s: not a unicast MAC", hw)
	}
	mac := req.ClientHWAddr.String()
	switch mt := req.MessageType(); mt {
	case dhcpv4.MessageTypeDiscover:
		return t.discover(p, req, mac, now)
	case dhcpv4.MessageTypeRequest:
		return t.request(p, req, mac, now)
	case dhcpv4.MessageTypeRelease:
		return t.release(p, req, mac, now)
	case dhcpv4.MessageTypeDecline:
		return t.decline(p, req, mac, now)
	case dhcpv4.MessageTypeInform:
		ciaddr := addr4(req.ClientIPAddr)
		if !ciaddr.IsValid() {
			return nil, false, fmt.Errorf("INFORM from %s without a client address", mac)
		}
		reply, err := p.reply(req, dhcpv4.MessageTypeInform, netip.Addr{})
		return reply, false, err
	case dhcpv4.MessageTypeNone:
		return nil, false, fmt.Errorf("no message type option from %s: plain BOOTP is not served", mac)
	default:
		return nil, false, fmt.Errorf("message type %s from %s: not a client message", mt, mac)
	}
}

func (t *leaseTable) discover(p *pool, req *dhcpv4.DHCPv4, mac string, now time.Time) (*dhcpv4.DHCPv4, bool, error) {
	changed := false
	e := t.byMAC[mac]
	switch {
	case e != nil && e.state == stateBound && !e.expired(now):
		// A live lease: offer it again, as it is.
	case e != nil:
		// Same MAC, same address: refresh the reservation.
		changed = e.state == stateBound
		e.state, e.expiry = stateOffered, now.Add(p.offerTime)
		if h := hostname(req); h != "" {
			e.hostname = h
		}
	default:
		a, ok := t.allocate(p, addr4(req.RequestedIPAddress()), mac, now)
		if !ok {
			return nil, false, fmt.Errorf("pool %s exhausted: no address to offer %s", p.prefix, mac)
		}
		e = &entry{mac: mac, addr: a, hostname: hostname(req), expiry: now.Add(p.offerTime), state: stateOffered}
		t.put(e)
	}
	reply, err := p.reply(req, dhcpv4.MessageTypeOffer, e.addr)
	return reply, changed, err
}

func (t *leaseTable) request(p *pool, req *dhcpv4.DHCPv4, mac string, now time.Time) (*dhcpv4.DHCPv4, bool, error) {
	sid := addr4(req.ServerIdentifier())
	requested := addr4(req.RequestedIPAddress())
	ciaddr := addr4(req.ClientIPAddr)
	var target netip.Addr
	switch {
	case sid.IsValid() && sid != p.server:
		// SELECTING another server's offer: let ours go.
		if e := t.byMAC[mac]; e != nil && e.state == stateOffered {
			t.remove(e)
		}
		return nil, false, nil
	case requested.IsValid(): // SELECTING ours, or INIT-REBOOT
		target = requested
	case ciaddr.IsValid(): // RENEWING, REBINDING
		target = ciaddr
	default:
		return nil, false, fmt.Errorf("REQUEST from %s names no address", mac)
	}
	if !p.contains(target) {
		nak, err := p.nak(req, fmt.Sprintf("%s is not an address of %s", target, p.prefix))
		return nak, false, err
	}
	if e := t.byAddr[target]; e != nil && e.mac != mac && e.state != stateOffered && !e.expired(now) {
		nak, err := p.nak(req, fmt.Sprintf("%s is %s to another client", target, e.state))
		return nak, false, err
	}
	h := hostname(req)
	if old := t.byMAC[mac]; old != nil && h == "" {
		h = old.hostname
	}
	t.put(&entry{mac: mac, addr: target, hostname: h, expiry: now.Add(p.leaseTime), state: stateBound})
	ack, err := p.reply(req, dhcpv4.MessageTypeAck, target)
	return ack, true, err
}

func (t *leaseTable) release(p *pool, req *dhcpv4.DHCPv4, mac string, now time.Time) (*dhcpv4.DHCPv4, bool, error) {
	ciaddr := addr4(req.ClientIPAddr)
	if sid := addr4(req.ServerIdentifier()); sid.IsValid() && sid != p.server {
		return nil, false, nil // another server's lease
	}
	e := t.byMAC[mac]
	if e == nil || e.addr != ciaddr || e.state != stateBound {
		return nil, false, fmt.Errorf("RELEASE of %s by %s: not its lease", ciaddr, mac)
	}
	// Keep the entry, expired, so the MAC gets the same address next time
	// unless the pool needs it.
	e.expiry = now
	return nil, true, nil
}

func (t *leaseTable) decline(p *pool, req *dhcpv4.DHCPv4, mac string, now time.Time) (*dhcpv4.DHCPv4, bool, error) {
	a := addr4(req.RequestedIPAddress())
	if sid := addr4(req.ServerIdentifier()); sid.IsValid() && sid != p.server {
		return nil, false, nil
	}
	e := t.byMAC[mac]
	if e == nil || e.addr != a {
		return nil, false, fmt.Errorf("DECLINE of %s by %s: not its address", a, mac)
	}
	t.holdBack(p, a, now)
	return nil, e.state == stateBound, fmt.Errorf("DECLINE by %s: %s is in use by another host; held back for %s", mac, a, p.declineTime)
}

// reply builds an OFFER, ACK or INFORM answer; yiaddr invalid: none (INFORM).
func (p *pool) reply(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, yiaddr netip.Addr) (*dhcpv4.DHCPv4, error) {
	if mt == dhcpv4.MessageTypeInform {
		mt = dhcpv4.MessageTypeAck
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.server.AsSlice())),
		dhcpv4.WithNetmask(net.CIDRMask(p.prefix.Bits(), 32)),
	}
	if p.router.IsValid() {
		mods = append(mods, dhcpv4.WithRouter(p.router.AsSlice()))
	}
	if len(p.dns) > 0 {
		ips := make([]net.IP, len(p.dns))
		for i, a := range p.dns {
			ips[i] = a.AsSlice()
		}
		mods = append(mods, dhcpv4.WithDNS(ips...))
	}
	if yiaddr.IsValid() {
		mods = append(mods,
			dhcpv4.WithYourIP(yiaddr.AsSlice()),
			dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(p.leaseTime)),
			dhcpv4.WithOption(dhcpv4.OptRenewTimeValue(p.leaseTime/2)),
			dhcpv4.WithOption(dhcpv4.OptRebindingTimeValue(p.leaseTime*7/8)),
		)
	}
	r, err := dhcpv4.NewReplyFromRequest(req, mods...)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", mt, err)
	}
	return r, nil
}

func (p *pool) nak(req *dhcpv4.DHCPv4, why string) (*dhcpv4.DHCPv4, error) {
	r, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(p.server.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)),
	)
	if err != nil {
		return nil, fmt.Errorf("build NAK: %w", err)
	}
	return r, nil
}

// addr4 converts an IPv4 address from a packet; nil, malformed and
// 0.0.0.0 are invalid.
func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}
	}
	a = a.Unmap()
	if !a.Is4() || a.IsUnspecified() {
		return netip.Addr{}
	}
	return a
}

// hostname is the client's option 12, cut to printable ASCII and 63 bytes
// (it ends up in logs and the lease file).
func hostname(req *dhcpv4.DHCPv4) string {
	h := strings.Map(func(r rune) rune {
		if r > ' ' && r < 0x7f {
			return r
		}
		return -1
	}, req.HostName())
	if len(h) > 63 {
		h = h[:63]
	}
	return h
}
