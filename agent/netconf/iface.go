package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// wiredInterfaces lists the physical wired NICs under sysClassNet: a
// device link, ARPHRD_ETHER, not wireless.
func wiredInterfaces(sysClassNet string) []string {
	ents, err := os.ReadDir(sysClassNet)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		dir := filepath.Join(sysClassNet, e.Name())
		typ, err := os.ReadFile(filepath.Join(dir, "type"))
		if err != nil || strings.TrimSpace(string(typ)) != "1" {
			continue
		}
		if !exists(filepath.Join(dir, "device")) || exists(filepath.Join(dir, "wireless")) || exists(filepath.Join(dir, "phy80211")) {
			continue
		}
		names = append(names, e.Name())
	}
	slices.Sort(names)
	return names
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func hasCarrier(sysClassNet, name string) bool {
	b, err := os.ReadFile(filepath.Join(sysClassNet, name, "carrier"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bring %s up: %w", name, err)
	}
	return nil
}

// runInterface is one interface's DHCP client with its link-local
// fallback. It returns when ctx ends (nil) or something fails.
func (m *Manager) runInterface(ctx context.Context, name string) error {
	if err := linkUp(name); err != nil {
		return err
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	// Link-local addresses left by an earlier run are claimed afresh.
	removeAddrs(name, func(p netip.Prefix) bool { return linkLocalNet.Contains(p.Addr()) })
	client, err := newDHCPClient(ifi, nclient4.WithTimeout(time.Second), nclient4.WithRetry(-1))
	if err != nil {
		return err
	}
	defer client.Close()

	ll := &linkLocal{m: m, ifi: ifi}
	defer ll.stop()
	backoff := 2 * time.Second
	for {
		lease, err := m.obtain(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			m.log.Debug("netconf: no DHCP lease", "iface", name, "err", err)
			ll.start(ctx)
			if !sleep(ctx, jitter(backoff/2, backoff)) {
				return nil
			}
			backoff = min(2*backoff, maxRetry)
			continue
		}
		backoff = 2 * time.Second
		ll.stop()
		if err := m.bound(ctx, name, client, lease); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			m.log.Warn("netconf: lease lost", "iface", name, "err", err)
		}
	}
}

func (m *Manager) obtain(ctx context.Context, client *nclient4.Client) (*nclient4.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, m.cfg.DHCPTimeout)
	defer cancel()
	var mods []dhcpv4.Modifier
	if m.cfg.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(m.cfg.Hostname)))
	}
	return client.Request(ctx, mods...)
}

// errLeaseLost ends bound when the lease cannot be kept.
var errLeaseLost = errors.New("lease lost")

// bound applies the lease and keeps it: renew at T1 (unicast to the
// server, in practice broadcast by nclient4), rebind at T2, and at expiry
// (or on a NAK) remove the address and return errLeaseLost.
func (m *Manager) bound(ctx context.Context, name string, client *nclient4.Client, lease *nclient4.Lease) error {
	var applied netip.Prefix
	defer func() {
		if ctx.Err() == nil && applied.IsValid() {
			m.unapply(name, applied)
		}
	}()
	for {
		a, err := m.apply(name, lease, applied)
		if err != nil {
			return err
		}
		applied = a.Prefix
		// Only now that the lease holds: drop the link-local address.
		removeAddrs(name, func(p netip.Prefix) bool { return linkLocalNet.Contains(p.Addr()) })
		m.setAddr(a)

		ack := lease.ACK
		lt := ack.IPAddressLeaseTime(time.Hour)
		t1 := ack.IPAddressRenewalTime(lt / 2)
		t2 := ack.IPAddressRebindingTime(lt * 7 / 8)
		if t1 <= 0 || t1 > lt {
			t1 = lt / 2
		}
		if t2 < t1 || t2 > lt {
			t2 = lt * 7 / 8
		}
		start := lease.CreationTime
		expiry := start.Add(lt)
		if !sleep(ctx, time.Until(start.Add(t1))) {
			return ctx.Err()
		}
		for {
			now := time.Now()
			if !now.Before(expiry) {
				return fmt.Errorf("%s on %s: %w: no renewal before it expired", applied, name, errLeaseLost)
			}
			phase, until := "renew", start.Add(t2)
			if !now.Before(until) {
				phase, until = "rebind", expiry
			}
			wait := max(until.Sub(now)/2, time.Second)
			rctx, cancel := context.WithTimeout(ctx, min(wait, expiry.Sub(now)))
			next, err := client.Renew(rctx, lease)
			cancel()
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var nak *nclient4.ErrNak
			if errors.As(err, &nak) {
				return fmt.Errorf("%s on %s: %w: server said no (%s)", applied, name, errLeaseLost, nak.Nak.Message())
			}
			if err == nil {
				m.log.Debug("netconf: lease renewed", "iface", name, "addr", applied, "phase", phase)
				lease = next
				break
			}
		}
	}
}

// apply configures the lease's address (replacing prev if it differs),
// default route and DNS, and returns the Addr it configured.
func (m *Manager) apply(name string, lease *nclient4.Lease, prev netip.Prefix) (Addr, error) {
	ack := lease.ACK
	ip := addr4(ack.YourIPAddr)
	if !ip.IsValid() {
		return Addr{}, fmt.Errorf("lease on %s: no address in the ACK", name)
	}
	bits := classBits(ip)
	if mask := ack.SubnetMask(); mask != nil {
		if ones, size := mask.Size(); size == 32 && ones > 0 {
			bits = ones
		}
	}
	a := Addr{
		Interface: name, Prefix: netip.PrefixFrom(ip, bits), Source: SourceDHCP,
		Server: addr4(ack.ServerIdentifier()),
		Expiry: lease.CreationTime.Add(ack.IPAddressLeaseTime(time.Hour)),
	}
	if rs := ack.Router(); len(rs) > 0 {
		a.Router = addr4(rs[0])
	}
	for _, d := range ack.DNS() {
		if d := addr4(d); d.IsValid() {
			a.DNS = append(a.DNS, d)
		}
	}
	if err := configure(name, a.Prefix, a.Router); err != nil {
		return Addr{}, err
	}
	if prev.IsValid() && prev != a.Prefix {
		m.unapply(name, prev)
	}
	return a, nil
}

// unapply removes a DHCP address (the kernel drops the routes through it)
// and records that the interface has none.
func (m *Manager) unapply(name string, p netip.Prefix) {
	removeAddrs(name, func(q netip.Prefix) bool { return q == p })
	m.setAddr(Addr{Interface: name})
}

// configure assigns prefix to the interface and, if router is valid,
// points the default route at it.
func configure(name string, prefix netip.Prefix, router netip.Addr) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	if err := netlink.AddrReplace(l, nlAddr(prefix)); err != nil {
		return fmt.Errorf("assign %s to %s: %w", prefix, name, err)
	}
	if router.IsValid() {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: router.AsSlice(), Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s on %s: %w", router, name, err)
		}
	}
	return nil
}

func nlAddr(p netip.Prefix) *netlink.Addr {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), 32)}}
	if p.Bits() < 31 {
		b := p.Masked().Addr().As4()
		for i := range b {
			b[i] |= ^a.Mask[i]
		}
		a.Broadcast = net.IP(b[:])
	}
	if linkLocalNet.Contains(p.Addr()) {
		a.Scope = int(netlink.SCOPE_LINK)
	}
	return a
}

// removeAddrs deletes the interface's IPv4 addresses that match.
func removeAddrs(name string, match func(netip.Prefix) bool) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return
	}
	as, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return
	}
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		ones, _ := a.Mask.Size()
		if ok && match(netip.PrefixFrom(ip.Unmap(), ones)) {
			netlink.AddrDel(l, &a)
		}
	}
}

func addr4(ip net.IP) netip.Addr {
	a, ok := netip.AddrFromSlice(ip)
	if !ok || !a.Unmap().Is4() || a.Unmap().IsUnspecified() {
		return netip.Addr{}
	}
	return a.Unmap()
}

// runStatic applies an ip= static configuration and holds it until ctx ends.
func (m *Manager) runStatic(ctx context.Context, ip IPParam) {
	for {
		err := m.applyStatic(ctx, ip)
		if err == nil {
			<-ctx.Done()
			return
		}
		m.log.Warn("netconf: static configuration; retrying", "err", err)
		if !sleep(ctx, 5*time.Second) {
			return
		}
	}
}

func (m *Manager) applyStatic(ctx context.Context, ip IPParam) error {
	name := ip.Device
	if name == "" && len(m.cfg.Interfaces) > 0 {
		name = m.cfg.Interfaces[0]
	}
	if name == "" {
		wired := wiredInterfaces(m.cfg.sysClassNet)
		if len(wired) == 0 {
			return errors.New("ip= names no device and there is no wired interface")
		}
		for _, w := range wired {
			linkUp(w)
		}
		m.waitCarrier(ctx, wired[:1], carrierWait)
		name = wired[0]
		if i := slices.IndexFunc(wired, func(n string) bool { return hasCarrier(m.cfg.sysClassNet, n) }); i >= 0 {
			name = wired[i]
		}
	}
	if err := linkUp(name); err != nil {
		return err
	}
	if err := configure(name, ip.Addr, ip.Gateway); err != nil {
		return err
	}
	m.setAddr(Addr{Interface: name, Prefix: ip.Addr, Source: SourceStatic, Router: ip.Gateway, DNS: ip.DNS})
	return nil
}

// linkLocal runs the RFC 3927 fallback of one interface in a goroutine
// that start starts (once) and stop ends and waits for. It leaves its
// address in place when stopped: the DHCP path removes it once a lease is
// applied, so the interface is never without an address in between.
type linkLocal struct {
	m   *Manager
	ifi *net.Interface

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (l *linkLocal) start(ctx context.Context) {
	if l.cancel != nil {
		return
	}
	ctx, l.cancel = context.WithCancel(ctx)
	l.wg.Go(func() {
		if err := l.run(ctx); err != nil && ctx.Err() == nil {
			l.m.log.Warn("netconf: link-local", "iface", l.ifi.Name, "err", err)
		}
	})
}

func (l *linkLocal) stop() {
	if l.cancel != nil {
		l.cancel()
		l.wg.Wait()
		l.cancel = nil
	}
}

// run claims a link-local address, then defends it; on losing it, it
// claims another.
func (l *linkLocal) run(ctx context.Context) error {
	conn, err := dialARP(l.ifi)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	gen := newLinkLocalGen(l.ifi.HardwareAddr)
	name, log := l.ifi.Name, l.m.log
	conflicts := 0
	for {
		addr := gen.next()
		if conflicts >= maxConflicts && !sleep(ctx, rateLimitWait) {
			return ctx.Err()
		}
		err := conn.probeAddr(ctx, addr)
		if errors.Is(err, errConflict) {
			conflicts++
			log.Info("netconf: link-local address taken; picking another", "iface", name, "err", err)
			continue
		}
		if err != nil {
			return err
		}
		prefix := netip.PrefixFrom(addr, 16)
		if err := configure(name, prefix, netip.Addr{}); err != nil {
			return err
		}
		l.m.setAddr(Addr{Interface: name, Prefix: prefix, Source: SourceLinkLocal})
		err = l.defend(ctx, conn, addr)
		if ctx.Err() != nil {
			return nil
		}
		removeAddrs(name, func(p netip.Prefix) bool { return p == prefix })
		l.m.setAddr(Addr{Interface: name})
		if !errors.Is(err, errConflict) {
			return err
		}
		conflicts++
		log.Warn("netconf: link-local address lost to another host; picking another", "iface", name, "err", err)
	}
}

// defend announces addr, then watches for other hosts using it: the first
// conflict in defendInterval is answered with an announcement, a second
// one gives the address up (errConflict).
func (l *linkLocal) defend(ctx context.Context, conn *arpConn, addr netip.Addr) error {
	for i := range announceNum {
		if err := conn.announce(addr); err != nil {
			return err
		}
		if i < announceNum-1 {
			if err := conn.watch(ctx, addr, false, time.Now().Add(announceInterval)); err != nil {
				return err
			}
		}
	}
	var lastDefended time.Time
	for {
		err := conn.watch(ctx, addr, false, time.Time{})
		if !errors.Is(err, errConflict) {
			return err
		}
		if time.Since(lastDefended) < defendInterval {
			return err
		}
		lastDefended = time.Now()
		l.m.log.Info("netconf: defending link-local address", "iface", l.ifi.Name, "err", err)
		if err := conn.announce(addr); err != nil {
			return err
		}
	}
}

// maxRetry caps the wait between DHCP attempts while an interface has no
// lease: short enough that nodes which fell back to link-local because
// they booted before the head move to the head's addresses soon after it
// starts serving.
const maxRetry = 10 * time.Second
