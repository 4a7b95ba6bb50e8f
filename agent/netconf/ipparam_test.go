package netconf

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseIPParam(t *testing.T) {
	a := netip.MustParseAddr
	tests := []struct {
		name    string
		in      string
		want    IPParam
		wantErr bool
	}{
		{"empty", "", IPParam{Mode: ModeAuto}, false},
		{"dhcp", "ip=dhcp", IPParam{Mode: ModeAuto}, false},
		{"bare dhcp", "dhcp", IPParam{Mode: ModeAuto}, false},
		{"on", "ip=on", IPParam{Mode: ModeAuto}, false},
		{"off", "ip=off", IPParam{Mode: ModeOff}, false},
		{"none", "none", IPParam{Mode: ModeOff}, false},
		{"full static", "ip=10.0.0.5::10.0.0.1:255.255.255.0:node1:eth0:off",
			IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("10.0.0.5/24"), Gateway: a("10.0.0.1"), Hostname: "node1", Device: "eth0"}, false},
		{"static with dns", "10.0.0.5:10.0.0.9:10.0.0.1:255.255.0.0::eth1:none:1.1.1.1:9.9.9.9:10.0.0.2",
			IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("10.0.0.5/16"), Server: a("10.0.0.9"), Gateway: a("10.0.0.1"), Device: "eth1", DNS: []netip.Addr{a("1.1.1.1"), a("9.9.9.9")}}, false},
		{"static, autoconf omitted", "ip=192.168.1.7::192.168.1.1:255.255.255.0",
			IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("192.168.1.7/24"), Gateway: a("192.168.1.1")}, false},
		{"classful mask A", "ip=10.1.2.3:::::eth0:off", IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("10.1.2.3/8"), Device: "eth0"}, false},
		{"classful mask B", "ip=172.16.2.3::::::off", IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("172.16.2.3/16")}, false},
		{"classful mask C", "ip=192.168.2.3::::::", IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("192.168.2.3/24")}, false},
		{"prefix length mask", "ip=10.0.0.5:::24::eth0:off", IPParam{Mode: ModeStatic, Addr: netip.MustParsePrefix("10.0.0.5/24"), Device: "eth0"}, false},
		{"dhcp on one device", "ip=:::::eth1:dhcp", IPParam{Mode: ModeAuto, Device: "eth1"}, false},
		{"dhcp ignores client ip", "ip=10.0.0.5::::host:eth1:dhcp", IPParam{Mode: ModeAuto, Hostname: "host", Device: "eth1"}, false},
		{"no client, off", "ip=:::::eth0:off", IPParam{Mode: ModeOff, Device: "eth0"}, false},
		{"no client, autoconf omitted", "ip=:::::eth0", IPParam{Mode: ModeAuto, Device: "eth0"}, false},
		{"bad client", "ip=10.0.0.500::::::off", IPParam{}, true},
		{"ipv6 client", "ip=fd00::1", IPParam{}, true},
		{"bad gateway", "ip=10.0.0.5::gw:255.0.0.0:::off", IPParam{}, true},
		{"bad mask", "ip=10.0.0.5:::255.0.255.0:::off", IPParam{}, true},
		{"zero mask", "ip=10.0.0.5:::0.0.0.0:::off", IPParam{}, true},
		{"mask too long", "ip=10.0.0.5:::33:::off", IPParam{}, true},
		{"bad autoconf", "ip=10.0.0.5::::::static", IPParam{}, true},
		{"bad dns", "ip=10.0.0.5::::::off:dns", IPParam{}, true},
		{"too many fields", "ip=1.2.3.4:::::::::::", IPParam{}, true},
		{"garbage", "ip=banana", IPParam{}, true},
		{"long device", "ip=:::::averyveryverylongname:dhcp", IPParam{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseIPParam(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseIPParam(%q) err = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})); diff != "" {
				t.Errorf("ParseIPParam(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLinkLocalGen(t *testing.T) {
	lo, hi := netip.MustParseAddr("169.254.1.0"), netip.MustParseAddr("169.254.254.255")
	macs := []net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {0x52, 0x54, 0, 0x12, 0x34, 0x56}}
	firsts := map[netip.Addr]bool{}
	for _, mac := range macs {
		g1, g2 := newLinkLocalGen(mac), newLinkLocalGen(mac)
		for i := range 2000 {
			a, b := g1.next(), g2.next()
			if a != b {
				t.Fatalf("MAC %s, pick %d: %s then %s: the generator is not determined by the MAC", mac, i, a, b)
			}
			if a.Less(lo) || hi.Less(a) {
				t.Fatalf("MAC %s, pick %d: %s outside 169.254.1.0-169.254.254.255", mac, i, a)
			}
			if i == 0 {
				firsts[a] = true
			}
		}
	}
	if len(firsts) != len(macs) {
		t.Errorf("first picks of %d MACs: %v, want all different", len(macs), firsts)
	}
	// The whole range is reachable: both ends' /24s show up.
	g := newLinkLocalGen(macs[0])
	var sawLow, sawHigh bool
	for range 100000 {
		b := g.next().As4()
		sawLow = sawLow || b[2] == 1
		sawHigh = sawHigh || b[2] == 254
	}
	if !sawLow || !sawHigh {
		t.Errorf("100000 picks: saw 169.254.1.x %v, 169.254.254.x %v; want both", sawLow, sawHigh)
	}
}

func TestARPPacket(t *testing.T) {
	ours := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	theirs := net.HardwareAddr{2, 0, 0, 0, 0, 2}
	addr := netip.MustParseAddr("169.254.7.7")
	zero := netip.IPv4Unspecified()
	tests := []struct {
		name    string
		p       arpPacket
		probing bool
		want    bool
	}{
		{"reply from holder", arpPacket{op: arpReply, sha: theirs, spa: addr, tpa: zero}, true, true},
		{"announcement from holder", arpPacket{op: arpRequest, sha: theirs, spa: addr, tpa: addr}, false, true},
		{"simultaneous probe", arpPacket{op: arpRequest, sha: theirs, spa: zero, tpa: addr}, true, true},
		{"their probe once we hold it", arpPacket{op: arpRequest, sha: theirs, spa: zero, tpa: addr}, false, false},
		{"our own", arpPacket{op: arpRequest, sha: ours, spa: addr, tpa: addr}, true, false},
		{"other address", arpPacket{op: arpReply, sha: theirs, spa: netip.MustParseAddr("169.254.7.8"), tpa: zero}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.p.tha = make(net.HardwareAddr, 6)
			got, err := parseARP(tt.p.marshal())
			if err != nil {
				t.Fatalf("parseARP(marshal(%+v)): %v", tt.p, err)
			}
			if got.op != tt.p.op || got.spa != tt.p.spa || got.tpa != tt.p.tpa || got.sha.String() != tt.p.sha.String() {
				t.Errorf("round trip: %+v, want %+v", got, tt.p)
			}
			if c := got.conflicts(addr, ours, tt.probing); c != tt.want {
				t.Errorf("conflicts(%s, probing %v) = %v, want %v", addr, tt.probing, c, tt.want)
			}
		})
	}
	for _, b := range [][]byte{nil, make([]byte, 27), make([]byte, 28)} {
		if _, err := parseARP(b); err == nil {
			t.Errorf("parseARP(%d zero bytes) = nil error, want one", len(b))
		}
	}
}

func TestWiredInterfaces(t *testing.T) {
	root := t.TempDir()
	mk := func(name, typ string, files ...string) {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "type"), []byte(typ+"\n"), 0o644)
		for _, f := range files {
			os.MkdirAll(filepath.Join(dir, f), 0o755)
		}
	}
	mk("eth0", "1", "device")
	mk("enp3s0", "1", "device")
	mk("lo", "772")
	mk("veth0", "1")                        // virtual: no device
	mk("wlan0", "1", "device", "wireless")  // wireless
	mk("wlp2s0", "1", "device", "phy80211") // wireless, newer drivers
	mk("ib0", "32", "device")               // InfiniBand
	mk("docker0", "1", "bridge")            // bridge
	got := wiredInterfaces(root)
	if diff := cmp.Diff([]string{"enp3s0", "eth0"}, got); diff != "" {
		t.Errorf("wiredInterfaces (-want +got):\n%s", diff)
	}
	os.WriteFile(filepath.Join(root, "eth0", "carrier"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(root, "enp3s0", "carrier"), []byte("0\n"), 0o644)
	if !hasCarrier(root, "eth0") || hasCarrier(root, "enp3s0") || hasCarrier(root, "wlan0") {
		t.Errorf("hasCarrier: eth0 %v enp3s0 %v wlan0 %v, want true false false", hasCarrier(root, "eth0"), hasCarrier(root, "enp3s0"), hasCarrier(root, "wlan0"))
	}
}

func FuzzParseIPParam(f *testing.F) {
	for _, s := range []string{"dhcp", "off", "ip=10.0.0.5::10.0.0.1:255.255.255.0:node1:eth0:off", "10.0.0.5:10.0.0.9:10.0.0.1:16::eth1:none:1.1.1.1:9.9.9.9:10.0.0.2", ":::::eth0:dhcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseIPParam(s)
		if err != nil {
			return
		}
		if p.Mode == ModeStatic && (!p.Addr.IsValid() || !p.Addr.Addr().Is4() || p.Addr.Bits() < 1) {
			t.Fatalf("ParseIPParam(%q) = static with address %s", s, p.Addr)
		}
		if p.Mode != ModeStatic && p.Addr.IsValid() {
			t.Fatalf("ParseIPParam(%q) = %s with address %s", s, p.Mode, p.Addr)
		}
	})
}
