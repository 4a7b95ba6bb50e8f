package netboot

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/internal/netnstest"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// startServer runs srv inside peer's namespace until the test ends.
func startServer(t *testing.T, peer *netnstest.Peer, srv *DHCPServer) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- peer.Do(func() error { return srv.Run(ctx) }) }()
	stopped := false
	var err error
	stop = func() error {
		if !stopped {
			cancel()
			err, stopped = <-errc, true
		}
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func waitServing(t *testing.T, srv *DHCPServer) {
	t.Helper()
	netnstest.Poll(t, 10*time.Second, "DHCP server not serving", func() bool { return srv.ServerAddr().IsValid() })
}

func request(t *testing.T, ifname string) *nclient4.Lease {
	t.Helper()
	c, err := nclient4.New(ifname, nclient4.WithTimeout(time.Second), nclient4.WithRetry(4))
	if err != nil {
		t.Fatalf("nclient4.New(%s): %v", ifname, err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lease, err := c.Request(ctx, dhcpv4.WithOption(dhcpv4.OptHostName("client-one")))
	if err != nil {
		t.Fatalf("DHCP exchange on %s: %v", ifname, err)
	}
	return lease
}

func TestServeOverVeth(t *testing.T) {
	peer := netnstest.NewVeth(t, "nbc0", "nbs0")
	leaseFile := filepath.Join(t.TempDir(), "leases.json")
	srv := NewDHCPServer(DHCPConfig{
		Logger: netnstest.Logger(t), Interface: peer.Name, LeaseFile: leaseFile, LeaseTime: 10 * time.Minute,
		Router: netip.MustParseAddr("10.77.0.254"), DNS: []netip.Addr{netip.MustParseAddr("10.77.0.53")},
	})
	stop := startServer(t, peer, srv)
	waitServing(t, srv)

	// The interface had no address: the server took the range's .1.
	addrs, err := peer.Addrs()
	if err != nil || !slices.Contains(addrs, netip.MustParsePrefix("10.77.0.1/24")) {
		t.Fatalf("server interface addresses = %v, %v; want 10.77.0.1/24 assigned by Run", addrs, err)
	}
	if got := srv.ServerAddr(); got != netip.MustParseAddr("10.77.0.1") {
		t.Errorf("ServerAddr() = %s, want 10.77.0.1", got)
	}

	lease := request(t, peer.Local)
	ack := lease.ACK
	if got := ack.YourIPAddr.String(); got != "10.77.0.2" {
		t.Errorf("leased address %s, want 10.77.0.2", got)
	}
	if got := ack.ServerIdentifier().String(); got != "10.77.0.1" {
		t.Errorf("server identifier %s, want 10.77.0.1", got)
	}
	if got := ack.IPAddressLeaseTime(0); got != 10*time.Minute {
		t.Errorf("lease time %s, want 10m", got)
	}
	if got := ack.SubnetMask().String(); got != "ffffff00" {
		t.Errorf("netmask %s, want ffffff00", got)
	}
	if r := ack.Router(); len(r) != 1 || r[0].String() != "10.77.0.254" {
		t.Errorf("router %v, want [10.77.0.254]", r)
	}
	if d := ack.DNS(); len(d) != 1 || d[0].String() != "10.77.0.53" {
		t.Errorf("DNS %v, want [10.77.0.53]", d)
	}
	ls := srv.Leases()
	if len(ls) != 1 || ls[0].MAC.String() != ack.ClientHWAddr.String() || ls[0].Hostname != "client-one" {
		t.Fatalf("Leases() = %+v, want one lease for %s named client-one", ls, ack.ClientHWAddr)
	}
	b, err := os.ReadFile(leaseFile)
	if err != nil || !strings.Contains(string(b), ack.ClientHWAddr.String()) {
		t.Fatalf("lease file: %q, %v; want it to name %s", b, err, ack.ClientHWAddr)
	}

	// Restart: the new server knows the lease before anyone asks, and the
	// client gets its address again.
	if err := stop(); err != nil {
		t.Fatalf("Run after cancel = %v, want nil", err)
	}
	srv2 := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Name, LeaseFile: leaseFile, DetectTimeout: -1})
	startServer(t, peer, srv2)
	waitServing(t, srv2)
	if ls := srv2.Leases(); len(ls) != 1 || ls[0].Addr != netip.MustParseAddr("10.77.0.2") {
		t.Fatalf("Leases() after restart = %+v, want the lease of 10.77.0.2", ls)
	}
	if got := request(t, peer.Local).ACK.YourIPAddr.String(); got != "10.77.0.2" {
		t.Errorf("address after server restart %s, want 10.77.0.2", got)
	}
}

func TestKeepsItsAddressInRange(t *testing.T) {
	peer := netnstest.NewVeth(t, "nbc1", "nbs1")
	peer.AddAddr(t, "10.77.0.9/24")
	srv := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Name, DetectTimeout: -1})
	startServer(t, peer, srv)
	waitServing(t, srv)
	if got := srv.ServerAddr(); got != netip.MustParseAddr("10.77.0.9") {
		t.Errorf("ServerAddr() = %s, want 10.77.0.9 (the interface's)", got)
	}
	if addrs, _ := peer.Addrs(); slices.Contains(addrs, netip.MustParsePrefix("10.77.0.1/24")) {
		t.Errorf("server assigned 10.77.0.1 although it had 10.77.0.9: %v", addrs)
	}
	if got := request(t, peer.Local).ACK.ServerIdentifier().String(); got != "10.77.0.9" {
		t.Errorf("server identifier %s, want 10.77.0.9", got)
	}
}

func TestStandsAsideForAnotherServer(t *testing.T) {
	peer := netnstest.NewVeth(t, "nbc2", "nbs2")
	other := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Name, Range: netip.MustParsePrefix("192.168.50.0/24"), DetectTimeout: -1})
	startServer(t, peer, other)
	waitServing(t, other)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	srv := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Local})
	err := srv.Run(ctx)
	var oe *OtherServerError
	if !errors.Is(err, ErrOtherServer) || !errors.As(err, &oe) || oe.Server != netip.MustParseAddr("192.168.50.1") {
		t.Fatalf("Run with another server on the link = %v, want ErrOtherServer naming 192.168.50.1", err)
	}
	if addrs, _ := netnstest.Addrs(peer.Local); len(addrs) != 0 {
		t.Errorf("server that stood aside assigned addresses anyway: %v", addrs)
	}
}

func TestMalformedPacketsOverVeth(t *testing.T) {
	peer := netnstest.NewVeth(t, "nbc3", "nbs3")
	srv := NewDHCPServer(DHCPConfig{Logger: netnstest.Logger(t), Interface: peer.Name, DetectTimeout: -1})
	startServer(t, peer, srv)
	waitServing(t, srv)
	conn, err := nclient4.NewRawUDPConn(peer.Local, dhcpv4.ClientPort)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	to := nclient4.DefaultServers
	good := pkt(t, dhcpv4.MessageTypeDiscover, hw(7)).ToBytes()
	for _, b := range [][]byte{nil, {1}, good[:100], good[:240], append(slices.Clone(good[:240]), 53, 200, 1), make([]byte, 1400)} {
		if _, err := conn.WriteTo(b, to); err != nil {
			t.Fatalf("send garbage: %v", err)
		}
	}
	// Still serving after the garbage.
	if got := request(t, peer.Local).ACK.YourIPAddr.String(); got != "10.77.0.2" {
		t.Errorf("lease after garbage %s, want 10.77.0.2", got)
	}
}
