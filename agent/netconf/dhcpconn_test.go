package netconf

import (
	"encoding/binary"
	"testing"

	"golang.org/x/net/bpf"
)

// ipv4 builds an IPv4 packet of protocol proto, with ihl 32-bit words of
// header, the fragment field frag, and a transport header whose
// destination port is dport.
func ipv4(proto byte, ihl int, frag uint16, dport uint16) []byte {
	p := make([]byte, ihl*4+8+16)
	p[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
	binary.BigEndian.PutUint16(p[6:], frag)
	p[8], p[9] = 64, proto
	binary.BigEndian.PutUint16(p[ihl*4:], 67)      // source port
	binary.BigEndian.PutUint16(p[ihl*4+2:], dport) // destination port
	return p
}

func TestDHCPFilter(t *testing.T) {
	prog, ok := bpf.Disassemble(dhcpFilter)
	if !ok {
		t.Fatal("the filter does not disassemble")
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		pkt  []byte
		keep bool
	}{
		{"a DHCP answer", ipv4(17, 5, 0, 68), true},
		{"a DHCP answer with IP options", ipv4(17, 6, 0, 68), true},
		{"a DHCP answer with don't-fragment set", ipv4(17, 5, 0x4000, 68), true},
		{"the first fragment of a DHCP answer", ipv4(17, 5, 0x2000, 68), true},
		{"a later fragment", ipv4(17, 5, 0x2001, 68), false},
		{"a DHCP request to a server", ipv4(17, 5, 0, 67), false},
		{"9P over TCP to port 68", ipv4(6, 5, 0, 68), false},
		{"memberlist over UDP", ipv4(17, 5, 0, 7946), false},
		{"a truncated packet", ipv4(17, 5, 0, 68)[:10], false},
	} {
		n, err := vm.Run(c.pkt)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := n > 0; got != c.keep {
			t.Errorf("%s: kept %d bytes, want kept=%v", c.name, n, c.keep)
		}
	}
}
