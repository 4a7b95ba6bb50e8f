package netboot

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/internal/netnstest"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/vishvananda/netlink"
)

var uefiPXE = []dhcpv4.Modifier{
	dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
	dhcpv4.WithOption(dhcpv4.OptClientArch(iana.EFI_X86_64)),
}

// The full server gives a PXE client an address and boot options, a
// plain client only an address.
func TestServerPXEOverVeth(t *testing.T) {
	peer := netnstest.NewVeth(t, "pxc0", "pxs0")
	tr := &Tracker{}
	srv := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Name, DetectTimeout: -1})
	srv.SetPXE(&PXE{Tracker: tr})
	startServer(t, peer, srv)
	waitServing(t, srv)

	c, err := nclient4.New(peer.Local, nclient4.WithTimeout(time.Second), nclient4.WithRetry(4))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx, uefiPXE...)
	if err != nil {
		t.Fatalf("PXE DHCP exchange: %v", err)
	}
	for _, r := range []*dhcpv4.DHCPv4{lease.Offer, lease.ACK} {
		if r.BootFileName != FileUEFI || r.ServerIPAddr.String() != "10.77.0.1" || r.YourIPAddr.String() != "10.77.0.2" || r.ClassIdentifier() != "" {
			t.Errorf("%s: file %q siaddr %s yiaddr %s option 60 %q; want %s from 10.77.0.1 with 10.77.0.2 and no option 60",
				r.MessageType(), r.BootFileName, r.ServerIPAddr, r.YourIPAddr, r.ClassIdentifier(), FileUEFI)
		}
	}
	if ms := tr.Machines(); len(ms) != 1 || ms[0].Arch != "uefi-x64" || ms[0].Addr != netip.MustParseAddr("10.77.0.2") {
		t.Errorf("tracker = %+v, want one uefi-x64 machine at 10.77.0.2", ms)
	}
	plain, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("plain DHCP exchange: %v", err)
	}
	if f := plain.ACK.BootFileName; f != "" || plain.ACK.BootFileNameOption() != "" {
		t.Errorf("plain client got boot file %q", f)
	}
}

// The proxy answers a PXE DISCOVER with boot options and no address,
// ignores a plain client, and ACKs the PXE REQUEST on port 4011.
func TestProxyOverVeth(t *testing.T) {
	peer := netnstest.NewVeth(t, "prc0", "prs0")
	peer.AddAddr(t, "10.9.0.1/24")
	tr := &Tracker{}
	px := NewProxyDHCP(ProxyConfig{Logger: netnstest.Logger(t), Interface: peer.Name, PXE: &PXE{Tracker: tr}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- peer.Do(func() error { return px.Run(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil after cancel", err)
		}
	})

	c, err := nclient4.New(peer.Local, nclient4.WithTimeout(time.Second), nclient4.WithRetry(3))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	offer, err := c.DiscoverOffer(dctx, uefiPXE...)
	if err != nil {
		t.Fatalf("PXE DISCOVER: %v", err)
	}
	if !offer.YourIPAddr.IsUnspecified() || offer.BootFileName != FileUEFI || offer.ServerIdentifier().String() != "10.9.0.1" {
		t.Fatalf("proxy offer: yiaddr %s file %q server %s; want 0.0.0.0, %s, 10.9.0.1", offer.YourIPAddr, offer.BootFileName, offer.ServerIdentifier(), FileUEFI)
	}
	// A plain client gets nothing from a proxy.
	pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
	defer pcancel()
	if o, err := c.DiscoverOffer(pctx); err == nil {
		t.Fatalf("plain DISCOVER answered: %s", o.Summary())
	}

	// Port 4011: the client, now holding an address from "the LAN's
	// server", asks the proxy.
	link, err := netlink.LinkByName(peer.Local)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 9, 0, 7), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(10, 9, 0, 7)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	req, err := dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithHwAddr(link.Attrs().HardwareAddr), dhcpv4.WithClientIP(net.IPv4(10, 9, 0, 7))}, uefiPXE...)...)
	if err != nil {
		t.Fatal(err)
	}
	to := &net.UDPAddr{IP: net.IPv4(10, 9, 0, 1), Port: PXEPort}
	conn.WriteTo([]byte("garbage, then a real request"), to)
	var ack *dhcpv4.DHCPv4
	buf := make([]byte, 1500)
	for try := 0; try < 5 && ack == nil; try++ {
		if _, err := conn.WriteTo(req.ToBytes(), to); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			continue
		}
		if ack, err = dhcpv4.FromBytes(buf[:n]); err != nil {
			t.Fatalf("reply on port %d: %v", PXEPort, err)
		}
	}
	if ack == nil {
		t.Fatalf("no ACK on port %d", PXEPort)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck || ack.BootFileName != FileUEFI || ack.TransactionID != req.TransactionID {
		t.Errorf("port %d reply: %s", PXEPort, ack.Summary())
	}
	if ms := tr.Machines(); len(ms) != 1 || ms[0].Addr != netip.MustParseAddr("10.9.0.7") {
		t.Errorf("tracker = %+v, want one machine at 10.9.0.7", ms)
	}
}
