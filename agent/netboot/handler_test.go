package netboot

import (
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/insomniacslk/dhcp/dhcpv4"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func mustPool(t testing.TB, prefix, server string) *pool {
	t.Helper()
	p, err := newPool(netip.MustParsePrefix(prefix), netip.MustParseAddr(server), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func hw(i int) net.HardwareAddr { return net.HardwareAddr{0x02, 0, 0, 0, byte(i >> 8), byte(i)} }

func ip(s string) net.IP { return netip.MustParseAddr(s).AsSlice() }

func pkt(t testing.TB, mt dhcpv4.MessageType, mac net.HardwareAddr, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	m, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac), dhcpv4.WithMessageType(mt)}, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func withReq(a string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(ip(a)))
}

func withSID(a string) dhcpv4.Modifier {
	return dhcpv4.WithOption(dhcpv4.OptServerIdentifier(ip(a)))
}

// checkInvariants fails t if the table breaks its rules: one address per
// MAC and one MAC per address, every address in the pool, never the
// server's, and no more entries than the pool has addresses.
func checkInvariants(t testing.TB, tb *leaseTable, p *pool) {
	t.Helper()
	if len(tb.byAddr) > p.size {
		t.Fatalf("table holds %d addresses, pool has %d", len(tb.byAddr), p.size)
	}
	macs := 0
	for a, e := range tb.byAddr {
		if e.addr != a {
			t.Fatalf("byAddr[%s] holds entry for %s", a, e.addr)
		}
		if !p.contains(a) {
			t.Fatalf("table holds %s, outside the pool (server %s)", a, p.server)
		}
		if e.mac != "" {
			macs++
			if tb.byMAC[e.mac] != e {
				t.Fatalf("address %s held by %s, but byMAC[%s] is %+v", a, e.mac, e.mac, tb.byMAC[e.mac])
			}
		}
	}
	if macs != len(tb.byMAC) {
		t.Fatalf("%d MACs hold addresses, byMAC has %d: some MAC holds two addresses or none", macs, len(tb.byMAC))
	}
}

// dora runs DISCOVER and REQUEST for mac and returns the ACKed address.
func dora(t *testing.T, tb *leaseTable, p *pool, mac net.HardwareAddr, now time.Time) netip.Addr {
	t.Helper()
	offer, _, err := tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, mac), now)
	if err != nil || offer == nil {
		t.Fatalf("DISCOVER from %s: reply %v, err %v", mac, offer, err)
	}
	ack, changed, err := tb.handle(p, pkt(t, dhcpv4.MessageTypeRequest, mac, withReq(offer.YourIPAddr.String()), withSID(p.server.String())), now)
	if err != nil || ack == nil || ack.MessageType() != dhcpv4.MessageTypeAck || !changed {
		t.Fatalf("REQUEST from %s: reply %v, changed %v, err %v", mac, ack, changed, err)
	}
	checkInvariants(t, tb, p)
	return addr4(ack.YourIPAddr)
}

func TestHandleScenarios(t *testing.T) {
	type step struct {
		now      time.Duration // after t0
		msg      func(t *testing.T) *dhcpv4.DHCPv4
		wantType dhcpv4.MessageType // MessageTypeNone: no reply
		wantAddr string             // yiaddr; "": don't check
		wantErr  bool
	}
	disc := func(i int, mods ...dhcpv4.Modifier) func(t *testing.T) *dhcpv4.DHCPv4 {
		return func(t *testing.T) *dhcpv4.DHCPv4 { return pkt(t, dhcpv4.MessageTypeDiscover, hw(i), mods...) }
	}
	req := func(i int, mods ...dhcpv4.Modifier) func(t *testing.T) *dhcpv4.DHCPv4 {
		return func(t *testing.T) *dhcpv4.DHCPv4 { return pkt(t, dhcpv4.MessageTypeRequest, hw(i), mods...) }
	}
	typ := func(mt dhcpv4.MessageType, i int, mods ...dhcpv4.Modifier) func(t *testing.T) *dhcpv4.DHCPv4 {
		return func(t *testing.T) *dhcpv4.DHCPv4 { return pkt(t, mt, hw(i), mods...) }
	}
	const sid = "10.77.0.1"
	tests := []struct {
		name  string
		steps []step
	}{
		{"dora", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
		}},
		{"two clients, two addresses", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, disc(2), dhcpv4.MessageTypeOffer, "10.77.0.3", false},
			{0, req(2, withReq("10.77.0.3"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.3", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
		}},
		{"same MAC same address after release and expiry", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
			{time.Second, typ(dhcpv4.MessageTypeRelease, 1, dhcpv4.WithClientIP(ip("10.77.0.2")), withSID(sid)), dhcpv4.MessageTypeNone, "", false},
			{2 * time.Second, disc(2), dhcpv4.MessageTypeOffer, "10.77.0.3", false},
			{3 * time.Hour, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
		}},
		{"requested address honoured when free", []step{
			{0, disc(1, withReq("10.77.0.50")), dhcpv4.MessageTypeOffer, "10.77.0.50", false},
		}},
		{"requested address outside the range ignored", []step{
			{0, disc(1, withReq("192.168.1.5")), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
		}},
		{"server address never offered", []step{
			{0, disc(1, withReq(sid)), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(2, withReq(sid)), dhcpv4.MessageTypeNak, "", false},
		}},
		{"address of a live lease refused to another MAC", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
			{0, req(2, withReq("10.77.0.2")), dhcpv4.MessageTypeNak, "", false},
			{0, req(2, dhcpv4.WithClientIP(ip("10.77.0.2"))), dhcpv4.MessageTypeNak, "", false},
			{0, disc(2, withReq("10.77.0.2")), dhcpv4.MessageTypeOffer, "10.77.0.3", false},
		}},
		{"offers are not leases: a REQUEST takes an offered address", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(2, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeNak, "", false},
		}},
		{"client chose another server", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("192.168.0.9"), withSID("192.168.0.1")), dhcpv4.MessageTypeNone, "", false},
			{0, disc(2), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
		}},
		{"renew and rebind by ciaddr", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
			{30 * time.Minute, req(1, dhcpv4.WithClientIP(ip("10.77.0.2"))), dhcpv4.MessageTypeAck, "10.77.0.2", false},
		}},
		{"init-reboot on a foreign network", []step{
			{0, req(1, withReq("192.168.7.7")), dhcpv4.MessageTypeNak, "", false},
		}},
		{"init-reboot after a server restart", []step{
			{0, req(1, withReq("10.77.0.9")), dhcpv4.MessageTypeAck, "10.77.0.9", false},
		}},
		{"decline holds the address back", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
			{0, typ(dhcpv4.MessageTypeDecline, 1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeNone, "", true},
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.3", false},
			{0, req(2, withReq("10.77.0.2")), dhcpv4.MessageTypeNak, "", false},
			{11 * time.Minute, req(2, withReq("10.77.0.2")), dhcpv4.MessageTypeAck, "10.77.0.2", false},
		}},
		{"decline of someone else's address ignored", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, typ(dhcpv4.MessageTypeDecline, 2, withReq("10.77.0.2")), dhcpv4.MessageTypeNone, "", true},
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
		}},
		{"release of someone else's lease ignored", []step{
			{0, disc(1), dhcpv4.MessageTypeOffer, "10.77.0.2", false},
			{0, req(1, withReq("10.77.0.2"), withSID(sid)), dhcpv4.MessageTypeAck, "10.77.0.2", false},
			{0, typ(dhcpv4.MessageTypeRelease, 2, dhcpv4.WithClientIP(ip("10.77.0.2"))), dhcpv4.MessageTypeNone, "", true},
			{0, req(2, withReq("10.77.0.2")), dhcpv4.MessageTypeNak, "", false},
		}},
		{"inform", []step{
			{0, typ(dhcpv4.MessageTypeInform, 1, dhcpv4.WithClientIP(ip("10.77.0.200"))), dhcpv4.MessageTypeAck, "0.0.0.0", false},
			{0, typ(dhcpv4.MessageTypeInform, 1), dhcpv4.MessageTypeNone, "", true},
		}},
		{"malformed", []step{
			{0, func(t *testing.T) *dhcpv4.DHCPv4 {
				m := pkt(t, dhcpv4.MessageTypeDiscover, hw(1))
				m.Options.Del(dhcpv4.OptionDHCPMessageType)
				return m
			}, dhcpv4.MessageTypeNone, "", true},
			{0, func(t *testing.T) *dhcpv4.DHCPv4 {
				m := pkt(t, dhcpv4.MessageTypeDiscover, hw(1))
				m.OpCode = dhcpv4.OpcodeBootReply
				return m
			}, dhcpv4.MessageTypeNone, "", true},
			{0, func(t *testing.T) *dhcpv4.DHCPv4 { return pkt(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{}) }, dhcpv4.MessageTypeNone, "", true},
			{0, func(t *testing.T) *dhcpv4.DHCPv4 {
				return pkt(t, dhcpv4.MessageTypeDiscover, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			}, dhcpv4.MessageTypeNone, "", true},
			{0, typ(dhcpv4.MessageTypeOffer, 1), dhcpv4.MessageTypeNone, "", true},
			{0, req(1), dhcpv4.MessageTypeNone, "", true},
			{0, func(t *testing.T) *dhcpv4.DHCPv4 {
				m := pkt(t, dhcpv4.MessageTypeRequest, hw(1))
				m.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionRequestedIPAddress, []byte{1, 2})) // truncated option
				m.Options.Update(dhcpv4.OptGeneric(dhcpv4.OptionServerIdentifier, []byte{}))
				m.ClientIPAddr = nil
				return m
			}, dhcpv4.MessageTypeNone, "", true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, "10.77.0.0/24", sid)
			tb := newLeaseTable()
			for i, st := range tt.steps {
				m := st.msg(t)
				reply, _, err := tb.handle(p, m, t0.Add(st.now))
				checkInvariants(t, tb, p)
				if (err != nil) != st.wantErr {
					t.Fatalf("step %d: handle(%s) err = %v, want error %v", i, m.MessageType(), err, st.wantErr)
				}
				got := dhcpv4.MessageTypeNone
				if reply != nil {
					got = reply.MessageType()
				}
				if got != st.wantType {
					t.Fatalf("step %d: handle(%s from %s) replied %s, want %s", i, m.MessageType(), m.ClientHWAddr, got, st.wantType)
				}
				if reply == nil {
					continue
				}
				if st.wantAddr != "" && reply.YourIPAddr.String() != st.wantAddr {
					t.Errorf("step %d: handle(%s) yiaddr = %s, want %s", i, m.MessageType(), reply.YourIPAddr, st.wantAddr)
				}
				if s := addr4(reply.ServerIdentifier()); s != p.server {
					t.Errorf("step %d: reply server identifier %s, want %s", i, s, p.server)
				}
				if reply.TransactionID != m.TransactionID || reply.ClientHWAddr.String() != m.ClientHWAddr.String() {
					t.Errorf("step %d: reply xid/chaddr %s/%s, want %s/%s", i, reply.TransactionID, reply.ClientHWAddr, m.TransactionID, m.ClientHWAddr)
				}
				if got == dhcpv4.MessageTypeOffer || got == dhcpv4.MessageTypeAck && st.wantAddr != "0.0.0.0" {
					if lt := reply.IPAddressLeaseTime(0); lt != time.Hour {
						t.Errorf("step %d: lease time %s, want 1h", i, lt)
					}
				}
			}
		})
	}
}

func TestServerAddressInsideRange(t *testing.T) {
	// A server at .5 (the interface already had that address) never hands
	// .5 out, and the table never holds it.
	p := mustPool(t, "10.77.0.0/29", "10.77.0.5")
	tb := newLeaseTable()
	var got []string
	for i := range 5 {
		got = append(got, dora(t, tb, p, hw(i), t0).String())
	}
	want := []string{"10.77.0.1", "10.77.0.2", "10.77.0.3", "10.77.0.4", "10.77.0.6"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("addresses handed out (-want +got):\n%s", diff)
	}
}

func TestPoolExhaustion(t *testing.T) {
	p := mustPool(t, "10.77.0.0/29", "10.77.0.1") // .2-.6: 5 addresses
	tb := newLeaseTable()
	for i := range 5 {
		dora(t, tb, p, hw(i), t0)
	}
	reply, _, err := tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, hw(99)), t0)
	if reply != nil || err == nil {
		t.Fatalf("DISCOVER on a full pool: reply %v, err %v; want no reply and an error", reply, err)
	}
	// Once a lease expires its address can go to someone else.
	reply, _, err = tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, hw(99)), t0.Add(2*time.Hour))
	if reply == nil || err != nil {
		t.Fatalf("DISCOVER after the leases expired: reply %v, err %v", reply, err)
	}
	checkInvariants(t, tb, p)
}

func TestDiscoverFloodDoesNotStarveRealNodes(t *testing.T) {
	p := mustPool(t, "10.77.0.0/29", "10.77.0.1")
	tb := newLeaseTable()
	real1 := dora(t, tb, p, hw(1), t0)
	real2 := dora(t, tb, p, hw(2), t0)
	for i := range 1000 {
		if _, _, err := tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, hw(1000+i)), t0.Add(time.Second)); err != nil {
			t.Fatalf("flood DISCOVER %d: %v", i, err)
		}
		checkInvariants(t, tb, p)
	}
	// The leases survived the flood...
	for mac, want := range map[int]netip.Addr{1: real1, 2: real2} {
		if e := tb.byMAC[hw(mac).String()]; e == nil || e.addr != want || e.state != stateBound {
			t.Errorf("lease of %s after the flood: %+v, want %s bound", hw(mac), e, want)
		}
	}
	// ...and a new real node still gets an address, even while the
	// flood's offers are live.
	got := dora(t, tb, p, hw(3), t0.Add(2*time.Second))
	if got == real1 || got == real2 || !p.contains(got) {
		t.Errorf("new node got %s", got)
	}
}

func TestOfferReservationExpires(t *testing.T) {
	p := mustPool(t, "10.77.0.0/30", "10.77.0.1") // one address: .2
	tb := newLeaseTable()
	if r, _, _ := tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, hw(1)), t0); r == nil || r.YourIPAddr.String() != "10.77.0.2" {
		t.Fatalf("first offer: %v", r)
	}
	// A live offer is taken only when nothing else is left (here: at
	// once, it is the only address), an expired one first of all.
	r, _, _ := tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, hw(2)), t0.Add(31*time.Second))
	if r == nil || r.YourIPAddr.String() != "10.77.0.2" {
		t.Fatalf("offer after the first expired: %v", r)
	}
	if tb.byMAC[hw(1).String()] != nil {
		t.Errorf("expired offer of %s still in the table", hw(1))
	}
}

func TestLeaseFileRoundTrip(t *testing.T) {
	p := mustPool(t, "10.77.0.0/24", "10.77.0.1")
	tb := newLeaseTable()
	dora(t, tb, p, hw(1), t0)
	dora(t, tb, p, hw(2), t0)
	tb.handle(p, pkt(t, dhcpv4.MessageTypeDiscover, hw(3)), t0) // an offer: not remembered
	b, err := tb.marshalLeases()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sub", "leases.json")
	if err := writeFileAtomic(path, b); err != nil {
		t.Fatal(err)
	}
	got := newLeaseTable()
	skipped, err := got.loadLeases(path, p)
	if err != nil || len(skipped) != 0 {
		t.Fatalf("loadLeases = %v, %v", skipped, err)
	}
	if diff := cmp.Diff(tb.leases(), got.leases(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("leases after reload (-want +got):\n%s", diff)
	}
	if len(got.leases()) != 2 {
		t.Errorf("reloaded %d leases, want 2", len(got.leases()))
	}

	// A smaller range after a restart: leases outside it are skipped.
	small := mustPool(t, "10.77.0.0/30", "10.77.0.1")
	got = newLeaseTable()
	skipped, err = got.loadLeases(path, small)
	if err != nil || len(skipped) != 1 || len(got.leases()) != 1 {
		t.Errorf("loadLeases into /30 = %d leases, skipped %v, err %v; want 1 lease, 1 skipped", len(got.leases()), skipped, err)
	}
	checkInvariants(t, got, small)

	if _, err := newLeaseTable().loadLeases(filepath.Join(t.TempDir(), "missing.json"), p); err != nil {
		t.Errorf("loadLeases(missing file) = %v, want nil", err)
	}
}

func TestNewPool(t *testing.T) {
	tests := []struct {
		prefix, server string
		wantErr        bool
		wantSize       int
	}{
		{"10.77.0.0/24", "10.77.0.1", false, 253},
		{"10.77.0.9/24", "10.77.0.1", false, 253},
		{"10.77.0.0/30", "10.77.0.1", false, 1},
		{"10.77.0.0/16", "10.77.0.1", false, 65533},
		{"10.77.0.0/31", "10.77.0.1", true, 0},
		{"10.0.0.0/8", "10.0.0.1", true, 0},
		{"10.77.0.0/24", "10.77.0.0", true, 0},
		{"10.77.0.0/24", "10.77.0.255", true, 0},
		{"10.77.0.0/24", "10.78.0.1", true, 0},
		{"fd00::/64", "fd00::1", true, 0},
	}
	for _, tt := range tests {
		p, err := newPool(netip.MustParsePrefix(tt.prefix), netip.MustParseAddr(tt.server), time.Hour)
		if (err != nil) != tt.wantErr {
			t.Errorf("newPool(%s, %s) err = %v, want error %v", tt.prefix, tt.server, err, tt.wantErr)
			continue
		}
		if err == nil && p.size != tt.wantSize {
			t.Errorf("newPool(%s, %s).size = %d, want %d", tt.prefix, tt.server, p.size, tt.wantSize)
		}
	}
}

func FuzzHandleDHCP(f *testing.F) {
	for _, m := range []*dhcpv4.DHCPv4{
		pkt(f, dhcpv4.MessageTypeDiscover, hw(1), withReq("10.77.0.3")),
		pkt(f, dhcpv4.MessageTypeRequest, hw(1), withReq("10.77.0.3"), withSID("10.77.0.1")),
		pkt(f, dhcpv4.MessageTypeRequest, hw(4), dhcpv4.WithClientIP(ip("10.77.0.4"))),
		pkt(f, dhcpv4.MessageTypeRelease, hw(2), dhcpv4.WithClientIP(ip("10.77.0.3"))),
		pkt(f, dhcpv4.MessageTypeDecline, hw(2), withReq("10.77.0.2")),
		pkt(f, dhcpv4.MessageTypeInform, hw(3), dhcpv4.WithClientIP(ip("10.77.0.6"))),
	} {
		f.Add(m.ToBytes())
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 6, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := dhcpv4.FromBytes(data)
		if err != nil {
			return
		}
		// A small, busy pool: a live lease, an expired one, an offer and a
		// declined address, so every path (and exhaustion) is reachable.
		p := mustPool(t, "10.77.0.0/29", "10.77.0.1")
		tb := newLeaseTable()
		tb.put(&entry{mac: hw(1).String(), addr: netip.MustParseAddr("10.77.0.2"), expiry: t0.Add(time.Hour), state: stateBound})
		tb.put(&entry{mac: hw(2).String(), addr: netip.MustParseAddr("10.77.0.3"), expiry: t0.Add(-time.Hour), state: stateBound})
		tb.put(&entry{mac: hw(3).String(), addr: netip.MustParseAddr("10.77.0.4"), expiry: t0.Add(time.Second), state: stateOffered})
		tb.put(&entry{addr: netip.MustParseAddr("10.77.0.5"), expiry: t0.Add(time.Minute), state: stateDeclined})
		for i, now := range []time.Time{t0, t0.Add(45 * time.Second), t0.Add(2 * time.Hour)} {
			reply, _, _ := tb.handle(p, req, now)
			checkInvariants(t, tb, p)
			if reply != nil {
				if y := addr4(reply.YourIPAddr); y.IsValid() && !p.contains(y) {
					t.Fatalf("round %d: reply hands out %s (server %s, pool %s)", i, y, p.server, p.prefix)
				}
				if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
					t.Fatalf("round %d: reply does not parse: %v", i, err)
				}
			}
		}
		// The same packet under every client message type.
		for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeRelease, dhcpv4.MessageTypeDecline, dhcpv4.MessageTypeInform} {
			req.UpdateOption(dhcpv4.OptMessageType(mt))
			reply, _, _ := tb.handle(p, req, t0.Add(time.Minute))
			checkInvariants(t, tb, p)
			if reply != nil {
				if y := addr4(reply.YourIPAddr); y.IsValid() && !p.contains(y) {
					t.Fatalf("%s: reply hands out %s", mt, y)
				}
			}
		}
		_ = fmt.Sprint(tb.sortedEntries())
	})
}
