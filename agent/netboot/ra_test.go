package netboot

import (
	"net"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/net/ipv6"
)

func TestSolicitorMAC(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xd1, 0xb5, 0x02}
	eui := net.ParseIP("fe80::5054:ff:fed1:b502")
	other := net.ParseIP("fe80::1")
	withOpt := append([]byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 1}, mac...)
	for _, tt := range []struct {
		name string
		msg  []byte
		src  net.IP
		want net.HardwareAddr
	}{
		{"source link-layer option", withOpt, other, mac},
		{"EUI-64 link-local, no option", []byte{133, 0, 0, 0, 0, 0, 0, 0}, eui, mac},
		{"no option, address not EUI-64", []byte{133, 0, 0, 0, 0, 0, 0, 0}, other, nil},
		{"option of length 0", []byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 2, 3, 4, 5, 6}, eui, nil},
		{"option longer than the message", []byte{133, 0, 0, 0, 0, 0, 0, 0, 1, 2, 1, 2, 3, 4, 5, 6}, eui, nil},
		{"not a solicitation", append([]byte{134}, withOpt[1:]...), eui, nil},
		{"short", []byte{133, 0}, eui, nil},
	} {
		if got := solicitorMAC(tt.msg, tt.src); got.String() != tt.want.String() {
			t.Errorf("%s: solicitorMAC = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// The advertisement ends iPXE's IPv6 configuration and offers a host
// nothing: no router lifetime, no flags, no prefix.
func TestRouterAdvertisementOffersNothing(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0xd1, 0xb5, 0x01}
	b := routerAdvertisement(mac)
	if len(b) != 24 || b[0] != byte(ipv6.ICMPTypeRouterAdvertisement) || b[1] != 0 {
		t.Fatalf("advertisement % x: want 24 bytes of type 134 code 0", b)
	}
	if b[4] != 0 || b[5] != 0 || b[6] != 0 || b[7] != 0 {
		t.Errorf("hop limit %d, flags %#x, router lifetime %d: want 0, 0, 0", b[4], b[5], int(b[6])<<8|int(b[7]))
	}
	if b[16] != 1 || b[17] != 1 || net.HardwareAddr(b[18:24]).String() != mac.String() {
		t.Errorf("option % x: want the source link-layer address %s", b[16:], mac)
	}
}

func TestPXEBooting(t *testing.T) {
	p := &PXE{}
	mac := net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 9}
	if p.Booting(mac) {
		t.Fatal("a machine that asked nothing counts as booting")
	}
	req, err := dhcpv4.NewDiscovery(mac)
	if err != nil {
		t.Fatal(err)
	}
	p.record(req, pxeClient{ipxe: true}, DefaultRange.Addr())
	if !p.Booting(mac) {
		t.Error("a machine given boot options does not count as booting")
	}
	if p.Booting(net.HardwareAddr{0x52, 0x54, 0x00, 0, 0, 8}) {
		t.Error("another machine counts as booting")
	}
}
