package daemon

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"time"

	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/netboot"
	"github.com/driftcluster/drift/agent/netconf"
	"github.com/driftcluster/drift/agent/supervise"
)

// LeaseFile is where the head keeps the addresses it handed out, so an
// agent restart gives every node the same address again.
const LeaseFile = "/var/lib/drift/dhcp-leases.json"

// addrWait bounds how long the node waits for its first address before
// it says it is ready (with addr=none if it got nothing).
const addrWait = 15 * time.Second

// network is the node's view of its addresses.
type network struct {
	a       *agent
	nc      *netconf.Manager
	dhcp    *netboot.DHCPServer
	dhcpIf  string        // the interface the DHCP server serves
	changed chan struct{} // signalled (buffered, 1) when the primary address may have changed
}

// startNetwork brings up the node's addresses: on the head, the DHCP
// server first (when no other server answers, the head numbers the
// segment); then DHCP clients with link-local fallback on the other
// interfaces. It returns once the node has its first address, or after
// addrWait.
func (a *agent) startNetwork(ctx context.Context, nics []boot.NIC) *network {
	n := &network{a: a, changed: make(chan struct{}, 1)}
	clientIfaces := nicNames(nics)
	// drift.dhcp=proxy: the LAN's server numbers it; netboot.go answers PXE clients.
	if a.node.Role == boot.RoleHead && a.node.Options.DHCP != "off" && a.node.Options.DHCP != "proxy" && len(nics) > 0 {
		if n.startDHCPServer(ctx, nics[0].Name) {
			clientIfaces = clientIfaces[1:]
		}
	}
	if len(clientIfaces) > 0 {
		n.nc = netconf.New(netconf.Config{
			Logger:     a.log,
			Interfaces: clientIfaces,
			Static:     a.node.Options.IP,
			Hostname:   a.node.Name,
			OnChange:   func(netconf.Addr) { n.signal() },
		})
		a.sup.Start(ctx, supervise.Service{Name: "netconf", Run: n.nc.Run})
	}
	wctx, cancel := context.WithTimeout(ctx, addrWait)
	defer cancel()
	for !n.primary().IsValid() {
		select {
		case <-wctx.Done():
			return n
		case <-n.changed:
		case <-time.After(250 * time.Millisecond):
		}
	}
	return n
}

// startDHCPServer runs the head's DHCP server on iface and reports
// whether it serves addresses there (false: another server answered).
func (n *network) startDHCPServer(ctx context.Context, iface string) bool {
	a := n.a
	cfg := netboot.DHCPConfig{
		Logger:    a.log,
		Interface: iface,
		LeaseFile: LeaseFile,
	}
	if a.node.Options.DHCP == "server" {
		cfg.DetectTimeout = -1
	}
	if r := a.node.Options.Range; r != "" {
		cfg.Range = netip.MustParsePrefix(r) // checked by boot.ParseCmdline
	}
	os.MkdirAll("/var/lib/drift", 0o755)
	n.dhcp, n.dhcpIf = netboot.NewDHCPServer(cfg), iface
	other := make(chan error, 1)
	a.sup.Start(ctx, supervise.Service{Name: "dhcp-server", Run: func(ctx context.Context) error {
		err := n.dhcp.Run(ctx)
		if errors.Is(err, netboot.ErrOtherServer) {
			select {
			case other <- err:
			default:
			}
			a.con.Event("dhcp: %v; not handing out addresses", err)
			return supervise.Done(err)
		}
		return err
	}})
	deadline := time.After(addrWait)
	for {
		if addr := n.dhcp.ServerAddr(); addr.IsValid() {
			a.con.Event("dhcp: serving addresses on %s from %s", iface, addr)
			n.signal()
			return true
		}
		select {
		case <-other:
			return false
		case <-deadline:
			a.log.Warn("dhcp server not serving yet; configuring the interface as a client", "iface", iface)
			return false
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (n *network) signal() {
	select {
	case n.changed <- struct{}{}:
	default:
	}
}

// primary is the node's address for the cluster: the head's DHCP server
// address, else a DHCP or static lease, else a link-local address.
func (n *network) primary() netip.Addr {
	if n.dhcp != nil {
		if a := n.dhcp.ServerAddr(); a.IsValid() {
			return a
		}
	}
	if n.nc == nil {
		return netip.Addr{}
	}
	var ll netip.Addr
	for _, a := range n.nc.Addrs() {
		if a.Source != netconf.SourceLinkLocal {
			return a.Prefix.Addr()
		}
		if !ll.IsValid() {
			ll = a.Prefix.Addr()
		}
	}
	return ll
}

// primaryIface is the interface that holds the primary address.
func (n *network) primaryIface() string {
	p := n.primary()
	if n.dhcp != nil && n.dhcp.ServerAddr() == p {
		return n.dhcpIf
	}
	if n.nc != nil {
		for _, a := range n.nc.Addrs() {
			if a.Prefix.Addr() == p {
				return a.Interface
			}
		}
	}
	return ""
}

func nicNames(nics []boot.NIC) []string {
	var out []string
	for _, n := range nics {
		out = append(out, n.Name)
	}
	return out
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return "none"
	}
	return a.String()
}
