package netconf

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/internal/netnstest"
	"github.com/driftcluster/drift/agent/netboot"
	"github.com/vishvananda/netlink"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// changes records OnChange calls.
type changes struct {
	mu sync.Mutex
	as []Addr
}

func (c *changes) add(a Addr) { c.mu.Lock(); c.as = append(c.as, a); c.mu.Unlock() }
func (c *changes) list() []Addr {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.as)
}

// startManager runs a Manager on ifname until the test ends.
func startManager(t *testing.T, ifname string, ch *changes) (*Manager, string) {
	t.Helper()
	resolv := filepath.Join(t.TempDir(), "resolv.conf")
	m := New(Config{Logger: netnstest.Logger(t), Interfaces: []string{ifname}, OnChange: ch.add, Hostname: "node-" + ifname, ResolvConf: resolv})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	})
	return m, resolv
}

// startServer runs a netboot DHCP server in peer's namespace until the test ends.
func startServer(t *testing.T, peer *netnstest.Peer, cfg netboot.DHCPConfig) *netboot.DHCPServer {
	t.Helper()
	cfg.Logger, cfg.Interface, cfg.DetectTimeout = netnstest.Logger(t), peer.Name, -1
	srv := netboot.NewDHCPServer(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- peer.Do(func() error { return srv.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server Run = %v", err)
		}
	})
	netnstest.Poll(t, 10*time.Second, "DHCP server not serving", func() bool { return srv.ServerAddr().IsValid() })
	return srv
}

// waitAddr is m.WaitAddr with a timeout; it fails t when none comes.
func waitAddr(t *testing.T, m *Manager, d time.Duration) Addr {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	a, err := m.WaitAddr(ctx)
	if err != nil {
		t.Fatalf("WaitAddr: %v", err)
	}
	return a
}

func hasAddr(ifname string, want netip.Prefix) bool {
	as, _ := netnstest.Addrs(ifname)
	return slices.Contains(as, want)
}

func linkLocalAddrs(ifname string) []netip.Prefix {
	as, _ := netnstest.Addrs(ifname)
	var ll []netip.Prefix
	for _, a := range as {
		if linkLocalNet.Contains(a.Addr()) {
			ll = append(ll, a)
		}
	}
	return ll
}

func TestDHCPLeaseAppliedAndRenewed(t *testing.T) {
	t.Parallel()
	peer := netnstest.NewVeth(t, "ncd0", "ncs0")
	srv := startServer(t, peer, netboot.DHCPConfig{
		LeaseTime: 4 * time.Second,
		Router:    netip.MustParseAddr("10.77.0.1"),
		DNS:       []netip.Addr{netip.MustParseAddr("10.77.0.53")},
	})
	var ch changes
	m, resolv := startManager(t, peer.Local, &ch)

	a := waitAddr(t, m, 10*time.Second)
	want := netip.MustParsePrefix("10.77.0.2/24")
	if a.Prefix != want || a.Source != SourceDHCP || a.Router != netip.MustParseAddr("10.77.0.1") || a.Server != netip.MustParseAddr("10.77.0.1") {
		t.Fatalf("WaitAddr = %+v, want %s from DHCP via 10.77.0.1", a, want)
	}
	if !hasAddr(peer.Local, want) {
		as, _ := netnstest.Addrs(peer.Local)
		t.Fatalf("addresses on %s = %v, want %s", peer.Local, as, want)
	}
	// The default route points at the router.
	l, _ := netlink.LinkByName(peer.Local)
	routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && r.Gw.Equal(net.ParseIP("10.77.0.1"))
	}) {
		t.Errorf("routes on %s = %v, want a default route via 10.77.0.1", peer.Local, routes)
	}
	if b, err := os.ReadFile(resolv); err != nil || !strings.Contains(string(b), "nameserver 10.77.0.53\n") {
		t.Errorf("resolv.conf = %q, %v; want nameserver 10.77.0.53", b, err)
	}
	if ls := srv.Leases(); len(ls) != 1 || ls[0].Hostname != "node-"+peer.Local {
		t.Errorf("server leases = %+v, want one for node-%s", ls, peer.Local)
	}

	// Renewal: a 4 s lease renews at 2 s; after 3 lease times the address
	// is still there and the expiry has moved on.
	first := a.Expiry
	netnstest.Poll(t, 6*time.Second, "lease never renewed (expiry did not move)", func() bool {
		as := m.Addrs()
		return len(as) == 1 && as[0].Expiry.After(first)
	})
	time.Sleep(8 * time.Second)
	if !hasAddr(peer.Local, want) {
		t.Fatalf("address %s gone after 3 lease times: renewals did not keep it", want)
	}
	if ls := srv.Leases(); len(ls) != 1 || !ls[0].Expiry.After(first.Add(4*time.Second)) {
		t.Errorf("server leases = %+v, want the lease extended by renewals", ls)
	}
	if got := ch.list(); len(got) != 1 {
		t.Errorf("OnChange calls = %+v, want exactly one (renewals keep the address)", got)
	}
}

func TestLinkLocalFallbackThenDHCP(t *testing.T) {
	t.Parallel()
	peer := netnstest.NewVeth(t, "ncl0", "ncp0")
	var ch changes
	m, _ := startManager(t, peer.Local, &ch)

	a := waitAddr(t, m, 20*time.Second)
	ifi, _ := net.InterfaceByName(peer.Local)
	first := newLinkLocalGen(ifi.HardwareAddr).next()
	if a.Source != SourceLinkLocal || a.Prefix != netip.PrefixFrom(first, 16) {
		t.Fatalf("address with no server = %+v, want %s/16 (the MAC's first pick) from link-local", a, first)
	}
	if !hasAddr(peer.Local, a.Prefix) {
		t.Fatalf("%s not on %s", a.Prefix, peer.Local)
	}

	// A server appears: its lease replaces the link-local address.
	startServer(t, peer, netboot.DHCPConfig{})
	want := netip.MustParsePrefix("10.77.0.2/24")
	netnstest.Poll(t, 45*time.Second, "DHCP lease never replaced the link-local address", func() bool {
		return hasAddr(peer.Local, want) && len(linkLocalAddrs(peer.Local)) == 0
	})
	got := ch.list()
	if len(got) < 2 || got[len(got)-1].Prefix != want || got[len(got)-1].Source != SourceDHCP {
		t.Errorf("OnChange calls = %+v, want link-local then %s from DHCP", got, want)
	}
}

func TestLinkLocalConflict(t *testing.T) {
	t.Parallel()
	peer := netnstest.NewVeth(t, "ncc0", "ncq0")
	ifi, err := net.InterfaceByName(peer.Local)
	if err != nil {
		t.Fatal(err)
	}
	g := newLinkLocalGen(ifi.HardwareAddr)
	taken, second := g.next(), g.next()
	peer.AddAddr(t, netip.PrefixFrom(taken, 16).String()) // the other host holds our first pick

	var ch changes
	m, _ := startManager(t, peer.Local, &ch)
	a := waitAddr(t, m, 30*time.Second)
	if a.Prefix != netip.PrefixFrom(second, 16) {
		t.Fatalf("address = %s, want %s/16: the first pick %s is taken, so the second", a.Prefix, second, taken)
	}
	if slices.Contains(linkLocalAddrs(peer.Local), netip.PrefixFrom(taken, 16)) {
		t.Errorf("%s took the address the other host holds", peer.Local)
	}
}
