package netboot

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/vishvananda/netlink"

	"github.com/driftcluster/drift/agent/internal/netnstest"
)

// sentConn is a net.PacketConn that keeps what the server sends.
type sentConn struct {
	net.PacketConn
	sent []*dhcpv4.DHCPv4
}

func (c *sentConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return 0, err
	}
	c.sent = append(c.sent, m)
	return len(b), nil
}

// fakeServer is a DHCPServer on 10.77.0.0/24 with its table in memory and
// probe answered by inUse (address → the MAC that answers for it).
func fakeServer(t *testing.T, inUse map[string]net.HardwareAddr, probes *[]string) *DHCPServer {
	t.Helper()
	s := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: "fake0"})
	s.pool = mustPool(t, "10.77.0.0/24", "10.77.0.1")
	s.probe = func(_ context.Context, a netip.Addr, exclude net.HardwareAddr) (net.HardwareAddr, error) {
		*probes = append(*probes, a.String())
		if by := inUse[a.String()]; by != nil && by.String() != exclude.String() {
			return by, nil
		}
		return nil, nil
	}
	return s
}

func TestProbeBeforeOffer(t *testing.T) {
	other := net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}
	tests := []struct {
		name       string
		inUse      map[string]net.HardwareAddr
		requested  string // the client's option 50; "": none
		leased     bool   // the client already holds a lease (DORA first, unprobed)
		wantOffer  string // "": no OFFER
		wantProbes []string
	}{
		{"nobody answers", nil, "", false, "10.77.0.2", []string{"10.77.0.2"}},
		{"first address in use", map[string]net.HardwareAddr{"10.77.0.2": other}, "", false, "10.77.0.3", []string{"10.77.0.2", "10.77.0.3"}},
		{"requested address in use", map[string]net.HardwareAddr{"10.77.0.9": other}, "10.77.0.9", false, "10.77.0.2", []string{"10.77.0.9", "10.77.0.2"}},
		{"the client itself answers", map[string]net.HardwareAddr{"10.77.0.9": hw(1)}, "10.77.0.9", false, "10.77.0.9", []string{"10.77.0.9"}},
		{"own lease is not probed", map[string]net.HardwareAddr{"10.77.0.2": other}, "", true, "10.77.0.2", nil},
		{"too many in use: no offer", map[string]net.HardwareAddr{"10.77.0.2": other, "10.77.0.3": other, "10.77.0.4": other, "10.77.0.5": other}, "", false, "",
			[]string{"10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var probes []string
			s := fakeServer(t, tt.inUse, &probes)
			if tt.leased {
				dora(t, s.table, s.pool, hw(1), t0)
			}
			var mods []dhcpv4.Modifier
			if tt.requested != "" {
				mods = append(mods, withReq(tt.requested))
			}
			conn := &sentConn{}
			s.handlePacket(t.Context(), conn, nil, pkt(t, dhcpv4.MessageTypeDiscover, hw(1), mods...), t0)
			got := ""
			if len(conn.sent) == 1 && conn.sent[0].MessageType() == dhcpv4.MessageTypeOffer {
				got = conn.sent[0].YourIPAddr.String()
			}
			if got != tt.wantOffer || len(conn.sent) > 1 {
				t.Errorf("DISCOVER answered with %d packets, OFFER of %q; want %q", len(conn.sent), got, tt.wantOffer)
			}
			if len(probes) != len(tt.wantProbes) || len(probes) > 0 && probes[0] != tt.wantProbes[0] || len(probes) > 0 && probes[len(probes)-1] != tt.wantProbes[len(tt.wantProbes)-1] {
				t.Errorf("probed %q, want %q", probes, tt.wantProbes)
			}
			checkInvariants(t, s.table, s.pool)
			// An address found in use stays out of the pool for a while.
			for a, by := range tt.inUse {
				if by.String() == hw(1).String() || tt.leased {
					continue
				}
				if e := s.table.byAddr[netip.MustParseAddr(a)]; e == nil || e.state != stateDeclined || !e.expiry.After(t0.Add(time.Minute)) {
					t.Errorf("address %s found in use: table entry %+v, want it held back", a, e)
				}
			}
		})
	}
}

// TestProbeFloodIsBounded sends DISCOVERs from many invented MACs within
// one second: the server probes at most its burst, and answers all.
func TestProbeFloodIsBounded(t *testing.T) {
	var probes []string
	s := fakeServer(t, nil, &probes)
	conn := &sentConn{}
	const flood = 200
	for i := range flood {
		now := t0.Add(time.Duration(i) * time.Second / flood)
		s.handlePacket(t.Context(), conn, nil, pkt(t, dhcpv4.MessageTypeDiscover, hw(1000+i)), now)
	}
	if max := probeBurst + 1; len(probes) > max {
		t.Errorf("%d DISCOVERs in a second caused %d probes, want at most %d", flood, len(probes), max)
	}
	if len(probes) < probeBurst {
		t.Errorf("%d DISCOVERs caused %d probes, want the burst of %d to be used", flood, len(probes), probeBurst)
	}
	if len(conn.sent) != flood {
		t.Errorf("answered %d of %d DISCOVERs, want all (unprobed past the budget)", len(conn.sent), flood)
	}
}

func TestProbeBudget(t *testing.T) {
	var b probeBudget
	n := 0
	for b.take(t0) {
		n++
	}
	if n != probeBurst {
		t.Fatalf("budget allowed %d probes at once, want %d", n, probeBurst)
	}
	if !b.take(t0.Add(probeRefill)) || b.take(t0.Add(probeRefill)) {
		t.Errorf("after %s the budget should allow exactly one more probe", probeRefill)
	}
}

// TestProbeOverVeth runs the server with a real ARP probe: a host (a
// macvlan on the client's side) holds 10.77.0.2, so the client is offered
// and leased 10.77.0.3.
func TestProbeOverVeth(t *testing.T) {
	peer := netnstest.NewVeth(t, "nbc5", "nbs5")
	parent, err := netlink.LinkByName(peer.Local)
	if err != nil {
		t.Fatal(err)
	}
	mv := &netlink.Macvlan{LinkAttrs: netlink.LinkAttrs{Name: "nbm5", ParentIndex: parent.Attrs().Index}, Mode: netlink.MACVLAN_MODE_BRIDGE}
	if err := netlink.LinkAdd(mv); err != nil {
		t.Fatalf("add macvlan: %v", err)
	}
	t.Cleanup(func() { netlink.LinkDel(mv) })
	if err := netlink.AddrAdd(mv, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 77, 0, 2), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(mv); err != nil {
		t.Fatal(err)
	}
	srv := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Name, DetectTimeout: -1})
	startServer(t, peer, srv)
	waitServing(t, srv)
	if got := request(t, peer.Local).ACK.YourIPAddr.String(); got != "10.77.0.3" {
		t.Errorf("leased %s while another host holds 10.77.0.2, want 10.77.0.3", got)
	}
}
