package netconf

import (
	"fmt"
	"net"

	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// dhcpClientPort is the port DHCP servers answer clients on.
const dhcpClientPort = 68

// dhcpFilter is a socket filter that lets only unfragmented (or first
// fragments of) IPv4 UDP datagrams to the DHCP client port through, on a
// packet socket of type Datagram (the data starts at the IP header).
// Without it the kernel copies every IPv4 packet the interface sees to the
// client's socket for the whole lease, and the client parses each one to
// throw it away: on a node of a busy cluster that was several percent of a
// core spent on the cluster's own storage traffic.
var dhcpFilter = mustAssemble([]bpf.Instruction{
	bpf.LoadAbsolute{Off: 9, Size: 1},                                      // IP protocol
	bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: unix.IPPROTO_UDP, SkipTrue: 6}, // not UDP: drop
	bpf.LoadAbsolute{Off: 6, Size: 2},                                      // flags and fragment offset
	bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 4},            // a later fragment: drop
	bpf.LoadMemShift{Off: 0},                                               // X = IP header length
	bpf.LoadIndirect{Off: 2, Size: 2},                                      // UDP destination port
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: dhcpClientPort, SkipFalse: 1},
	bpf.RetConstant{Val: 0x40000}, // keep it whole
	bpf.RetConstant{Val: 0},       // drop
})

func mustAssemble(prog []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(prog)
	if err != nil {
		panic(err)
	}
	return raw
}

// newDHCPClient is nclient4.New on a packet socket that sees only DHCP's
// answers (dhcpFilter), filtered from before it is bound.
func newDHCPClient(ifi *net.Interface, opts ...nclient4.ClientOpt) (*nclient4.Client, error) {
	raw, err := packet.Listen(ifi, packet.Datagram, unix.ETH_P_IP, &packet.Config{Filter: dhcpFilter})
	if err != nil {
		return nil, fmt.Errorf("dhcp client on %s: %w", ifi.Name, err)
	}
	c, err := nclient4.NewWithConn(nclient4.NewBroadcastUDPConn(raw, &net.UDPAddr{Port: dhcpClientPort}), ifi.HardwareAddr, opts...)
	if err != nil {
		raw.Close()
		return nil, fmt.Errorf("dhcp client on %s: %w", ifi.Name, err)
	}
	return c, nil
}
