// Package netconf configures a node's network with no help from anyone:
// every wired interface with carrier asks DHCPv4 for an address, and one
// that gets no lease within a few seconds takes an IPv4 link-local address
// (RFC 3927) while DHCP keeps trying in the background; a static ip= from
// the kernel command line is honoured instead. driftd runs a Manager as a
// service and waits for its first address before announcing itself.
package netconf

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/internal/atomicfile"
)

// Source says where an address came from.
type Source string

const (
	SourceDHCP      Source = "dhcp"
	SourceLinkLocal Source = "link-local"
	SourceStatic    Source = "static"
)

// Addr is an interface's IPv4 configuration.
type Addr struct {
	Interface string
	Prefix    netip.Prefix // address and netmask; invalid: the interface has lost its address
	Source    Source
	Router    netip.Addr   // zero: none
	DNS       []netip.Addr // nil: none
	Server    netip.Addr   // SourceDHCP: the server that leased it
	Expiry    time.Time    // SourceDHCP: when the lease runs out (it moves on every renewal)
}

// Config configures a Manager.
type Config struct {
	Logger *slog.Logger // nil: slog.Default()
	// Interfaces to configure. nil: every wired interface with carrier
	// (a physical NIC: /sys/class/net/X/device exists, type 1, not
	// wireless), each brought up and given a few seconds to find carrier;
	// interfaces that get carrier later are picked up every few seconds.
	Interfaces []string
	// DHCPTimeout is how long to wait for a lease before taking a
	// link-local address. Zero: 4 s.
	DHCPTimeout time.Duration
	// Static is the kernel's ip= parameter (with or without "ip="); see
	// ParseIPParam. "": DHCP with link-local fallback.
	Static string
	// OnChange is called, from the interface's goroutine, whenever an
	// interface's address changes (not on a renewal that keeps it). An
	// Addr with an invalid Prefix means the interface lost its address.
	// It must not block for long. nil: not called.
	OnChange func(Addr)
	// Hostname is sent to the DHCP server (option 12). "": os.Hostname().
	Hostname string
	// ResolvConf is the file the DHCP (or ip=) DNS servers are written to;
	// it is left alone while no server is known. "": /etc/resolv.conf.
	ResolvConf string

	sysClassNet string // "": /sys/class/net (tests point it elsewhere)
}

// Manager configures the interfaces and keeps them configured. Create it
// with New, run Run (once), and ask Addrs or WaitAddr from any goroutine.
type Manager struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	addrs   map[string]Addr
	changed chan struct{} // closed and replaced whenever addrs changes
}

// New returns a Manager for cfg; nothing happens until Run.
func New(cfg Config) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DHCPTimeout <= 0 {
		cfg.DHCPTimeout = 4 * time.Second
	}
	if cfg.Hostname == "" {
		cfg.Hostname, _ = os.Hostname()
	}
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.sysClassNet == "" {
		cfg.sysClassNet = "/sys/class/net"
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("service", "netconf"), addrs: map[string]Addr{}, changed: make(chan struct{})}
}

// Addrs lists the interfaces' current addresses, by interface name.
func (m *Manager) Addrs() []Addr {
	m.mu.Lock()
	defer m.mu.Unlock()
	var as []Addr
	for _, a := range m.addrs {
		if a.Prefix.IsValid() {
			as = append(as, a)
		}
	}
	slices.SortFunc(as, func(a, b Addr) int { return strings.Compare(a.Interface, b.Interface) })
	return as
}

// WaitAddr waits until some interface has an address (DHCP, static or
// link-local) and returns it; preferring, when several have one, a DHCP
// or static address. It returns ctx's error if ctx ends first: give it a
// timeout.
func (m *Manager) WaitAddr(ctx context.Context) (Addr, error) {
	for {
		m.mu.Lock()
		ch := m.changed
		m.mu.Unlock()
		if as := m.Addrs(); len(as) > 0 {
			slices.SortStableFunc(as, func(a, b Addr) int {
				return boolInt(a.Source == SourceLinkLocal) - boolInt(b.Source == SourceLinkLocal)
			})
			return as[0], nil
		}
		select {
		case <-ctx.Done():
			return Addr{}, fmt.Errorf("netconf: wait for an address: %w", ctx.Err())
		case <-ch:
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// setAddr records a's configuration, and calls OnChange if the address
// (or its source) changed. A change of DNS servers rewrites resolv.conf.
func (m *Manager) setAddr(a Addr) {
	m.mu.Lock()
	old := m.addrs[a.Interface]
	m.addrs[a.Interface] = a
	dnsChanged := !slices.Equal(old.DNS, a.DNS)
	m.mu.Unlock()
	// resolv.conf is written before waiters are woken, so that whoever
	// sees the address can also resolve names through it.
	if dnsChanged {
		m.writeResolvConf()
	}
	m.mu.Lock()
	close(m.changed)
	m.changed = make(chan struct{})
	m.mu.Unlock()
	if old.Prefix != a.Prefix || old.Source != a.Source {
		if a.Prefix.IsValid() {
			m.log.Info("netconf: address", "iface", a.Interface, "addr", a.Prefix, "source", a.Source, "router", a.Router)
		} else {
			m.log.Warn("netconf: address lost", "iface", a.Interface, "was", old.Prefix)
		}
		if m.cfg.OnChange != nil {
			m.cfg.OnChange(a)
		}
	}
}

// Run configures the network until ctx ends, then returns nil (the
// addresses stay). With ip=off it does nothing but wait. Errors on one
// interface are logged and retried; Run returns an error only for an ip=
// it cannot parse.
func (m *Manager) Run(ctx context.Context) error {
	ip, err := ParseIPParam(m.cfg.Static)
	if err != nil {
		return fmt.Errorf("netconf: %w", err)
	}
	switch ip.Mode {
	case ModeOff:
		m.log.Info("netconf: ip=off: leaving the network unconfigured")
		<-ctx.Done()
		return nil
	case ModeStatic:
		m.runStatic(ctx, ip)
		return nil
	}
	names := m.cfg.Interfaces
	if ip.Device != "" {
		names = []string{ip.Device}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	started := map[string]bool{}
	start := func(name string) {
		started[name] = true
		wg.Go(func() { m.keepInterface(ctx, name) })
	}
	if names != nil {
		for _, name := range names {
			if err := linkUp(name); err != nil {
				m.log.Warn("netconf: bring interface up", "iface", name, "err", err)
			}
		}
		m.waitCarrier(ctx, names, carrierWait)
		for _, name := range names {
			start(name)
		}
		<-ctx.Done()
		return nil
	}
	// Every wired interface with carrier, now and later.
	tick := time.NewTicker(rescanInterval)
	defer tick.Stop()
	up := map[string]bool{}
	for first := true; ; first = false {
		var fresh []string
		for _, name := range wiredInterfaces(m.cfg.sysClassNet) {
			if !up[name] {
				up[name] = true
				if err := linkUp(name); err != nil {
					m.log.Warn("netconf: bring interface up", "iface", name, "err", err)
				}
				fresh = append(fresh, name)
			}
		}
		if first {
			m.waitCarrier(ctx, fresh, carrierWait)
		}
		for name := range up {
			if !started[name] && hasCarrier(m.cfg.sysClassNet, name) {
				start(name)
			}
		}
		if first && len(started) == 0 {
			m.log.Warn("netconf: no wired interface with carrier yet; looking again every few seconds")
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

const (
	carrierWait    = 3 * time.Second
	rescanInterval = 5 * time.Second
)

// waitCarrier waits up to d for all of names to have carrier.
func (m *Manager) waitCarrier(ctx context.Context, names []string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if !slices.ContainsFunc(names, func(n string) bool { return !hasCarrier(m.cfg.sysClassNet, n) }) {
			return
		}
		sleep(ctx, 100*time.Millisecond)
	}
}

// keepInterface configures one interface until ctx ends, starting over
// (after a pause) when something fails.
func (m *Manager) keepInterface(ctx context.Context, name string) {
	for {
		err := m.runInterface(ctx, name)
		if ctx.Err() != nil {
			return
		}
		m.log.Warn("netconf: interface failed; retrying", "iface", name, "err", err)
		if !sleep(ctx, 5*time.Second) {
			return
		}
	}
}

// sleep waits d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// writeResolvConf writes every interface's DNS servers (first seen first)
// to the resolv.conf file; with none known it leaves the file alone.
func (m *Manager) writeResolvConf() {
	m.mu.Lock()
	var dns []netip.Addr
	names := make([]string, 0, len(m.addrs))
	for n := range m.addrs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		for _, d := range m.addrs[n].DNS {
			if !slices.Contains(dns, d) {
				dns = append(dns, d)
			}
		}
	}
	m.mu.Unlock()
	if len(dns) == 0 {
		return
	}
	var b strings.Builder
	b.WriteString("# written by driftd (netconf)\n")
	for _, d := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", d)
	}
	if err := writeFileAtomic(m.cfg.ResolvConf, []byte(b.String())); err != nil {
		m.log.Warn("netconf: write resolv.conf", "err", err)
	}
}

func writeFileAtomic(path string, b []byte) error { return atomicfile.Write(path, b, 0o644) }
