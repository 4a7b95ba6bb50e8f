package netboot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// Boot file names: what a PXE client gets, by firmware.
const (
	FileBIOS   = "undionly.kpxe" // iPXE for a legacy BIOS PXE ROM (option 93 = 0), over TFTP
	FileUEFI   = "snponly.efi"   // iPXE for UEFI x86-64 (option 93 = 7 or 9), over TFTP
	FileScript = "boot.ipxe"     // the iPXE script, over HTTP, for clients that are iPXE already
)

// PXE decides what a network-booting client boots and records that it
// asked. The full DHCP server (SetPXE) and the proxyDHCP server both use
// it. The zero value answers with HTTP on port 80 and records nothing.
type PXE struct {
	HTTPPort int      // port of the head's HTTP server; 0: 80
	Tracker  *Tracker // where clients are recorded; nil: nowhere

	mu      sync.Mutex
	booting map[string]time.Time // MAC: when it last asked for boot options (Booting)
}

// ErrNotPXE is what the handlers return (errors.Is) for a DHCP client that
// is not network-booting: not an error in itself, it is just not ours.
var ErrNotPXE = errors.New("not a PXE or iPXE client")

// pxeClient is what a DHCP request says about a network-booting client.
type pxeClient struct {
	arch      iana.Arch
	hasArch   bool // option 93 was present
	ipxe      bool // user class (option 77) "iPXE": the client runs iPXE already
	pxeVendor bool // vendor class (option 60) starts with "PXEClient"
}

// parsePXE reads the PXE options of req. ok is false for a client that is
// neither a PXE client (vendor class PXEClient) nor iPXE (user class iPXE).
func parsePXE(req *dhcpv4.DHCPv4) (c pxeClient, ok bool) {
	c.pxeVendor = strings.HasPrefix(req.ClassIdentifier(), "PXEClient")
	c.ipxe = slices.Contains(req.UserClass(), "iPXE")
	if archs := req.ClientArch(); len(archs) > 0 {
		c.arch, c.hasArch = archs[0], true
	}
	return c, c.pxeVendor || c.ipxe
}

// archName is a short name for the client's firmware, for the status list.
func (c pxeClient) archName() string {
	if !c.hasArch {
		return "bios" // PXE 2.0 clients that predate option 93 are BIOS ROMs
	}
	switch c.arch {
	case iana.INTEL_X86PC:
		return "bios"
	case iana.EFI_X86_64, iana.EFI_BC:
		return "uefi-x64"
	case iana.EFI_IA32:
		return "uefi-ia32"
	case iana.EFI_ARM64:
		return "uefi-arm64"
	}
	return "arch-" + strconv.Itoa(int(c.arch))
}

// bootFile is the file c boots from the head at server: the iPXE script
// over HTTP if c is iPXE, else the iPXE binary for its firmware over TFTP.
func (p *PXE) bootFile(c pxeClient, server netip.Addr) (string, error) {
	if c.ipxe {
		host := server.String()
		if p.HTTPPort != 0 && p.HTTPPort != 80 {
			host += ":" + strconv.Itoa(p.HTTPPort)
		}
		return "http://" + host + "/" + FileScript, nil
	}
	if !c.hasArch {
		return FileBIOS, nil
	}
	switch c.arch {
	case iana.INTEL_X86PC:
		return FileBIOS, nil
	case iana.EFI_X86_64, iana.EFI_BC:
		return FileUEFI, nil
	}
	return "", fmt.Errorf("client architecture %s (option 93 = %d): drift boots x86-64 only (BIOS 0, UEFI 7 or 9)", c.arch, uint16(c.arch))
}

// bootOptions are the reply modifiers that tell c, from server, what to
// boot: next-server (siaddr) and option 66 name the TFTP server, the
// BOOTP file field and option 67 the boot file. With proxy, option 60
// "PXEClient" marks the reply as a PXE proxy's (the spec requires it; a
// client ignores a proxy offer without it). The full server leaves
// option 60 out: UEFI firmware takes a PXEClient offer that carries an
// address for a "BINL" server and asks it again on port 4011 before
// booting, while a plain offer with a boot file it boots at once. No
// option 43: the client takes the boot file from the reply (or, from a
// proxy, asks on port 4011) rather than running boot-server discovery.
func (p *PXE) bootOptions(req *dhcpv4.DHCPv4, c pxeClient, server netip.Addr, proxy bool) ([]dhcpv4.Modifier, string, error) {
	file, err := p.bootFile(c, server)
	if err != nil {
		return nil, "", err
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithServerIP(server.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(server.String())),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(file)),
		func(d *dhcpv4.DHCPv4) { d.BootFileName = file },
	}
	if proxy && c.pxeVendor {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")))
	}
	if c.ipxe && !proxy {
		// iPXE takes a plain offer only after waiting 2 s for a
		// ProxyDHCP offer too, unless the offer says there is none.
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionEtherboot, ipxeNoProxyDHCP)))
	}
	// The client's UUID (option 97): PXE clients expect it echoed.
	if uuid := req.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(uuid) > 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, uuid)))
	}
	return mods, file, nil
}

// ipxeNoProxyDHCP is the value of option 175 (iPXE's encapsulated
// options) holding only sub-option 176, no-pxedhcp, set: the offer tells
// iPXE to ask for its address at once instead of waiting for ProxyDHCP
// offers (dnsmasq's "dhcp-option=encap:175,176,1b").
var ipxeNoProxyDHCP = []byte{176, 1, 1}

// decorate adds the boot options to reply, the full DHCP server's OFFER
// or ACK to req, when req comes from a PXE or iPXE client; it returns the
// boot file ("" when it added nothing). The server's address is the
// reply's server identifier.
func (p *PXE) decorate(req, reply *dhcpv4.DHCPv4) (string, error) {
	if mt := reply.MessageType(); mt != dhcpv4.MessageTypeOffer && mt != dhcpv4.MessageTypeAck {
		return "", nil
	}
	c, ok := parsePXE(req)
	if !ok {
		return "", nil
	}
	server := addr4(reply.ServerIdentifier())
	if !server.IsValid() {
		return "", errors.New("reply has no server identifier")
	}
	mods, file, err := p.bootOptions(req, c, server, false)
	if err != nil {
		return "", err
	}
	for _, m := range mods {
		m(reply)
	}
	p.record(req, c, addr4(reply.YourIPAddr))
	return file, nil
}

// record notes that a PXE client asked (the DHCP stage).
func (p *PXE) record(req *dhcpv4.DHCPv4, c pxeClient, addr netip.Addr) {
	p.mu.Lock()
	if p.booting == nil {
		p.booting = map[string]time.Time{}
	}
	now := time.Now()
	for mac, at := range p.booting {
		if now.Sub(at) > bootingFor {
			delete(p.booting, mac)
		}
	}
	p.booting[req.ClientHWAddr.String()] = now
	p.mu.Unlock()
	if p.Tracker == nil {
		return
	}
	p.Tracker.DHCP(req.ClientHWAddr.String(), c.archName(), addr)
}

// bootingFor is how long a machine that was given boot options counts as
// network-booting (Booting): its firmware's and iPXE's steps, and the
// kernel's own DHCP.
const bootingFor = 2 * time.Minute

// Booting reports whether the machine with this MAC asked for boot
// options within bootingFor.
func (p *PXE) Booting(mac net.HardwareAddr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.booting[mac.String()]
	return ok && time.Since(at) <= bootingFor
}

// SetPXE makes the server add boot options to its OFFERs and ACKs for PXE
// and iPXE clients (nil: stop). It may be called at any time.
func (s *DHCPServer) SetPXE(p *PXE) { s.pxe.Store(p) }

// addBootOptions adds p's boot options to reply if req is a PXE client's.
func (s *DHCPServer) addBootOptions(req, reply *dhcpv4.DHCPv4) {
	p := s.pxe.Load()
	if p == nil {
		return
	}
	file, err := p.decorate(req, reply)
	if err != nil {
		s.drop(nil, fmt.Errorf("no boot options for %s: %w", req.ClientHWAddr, err))
		return
	}
	if file != "" {
		s.log.Debug("dhcp server: boot options", "mac", req.ClientHWAddr, "file", file)
	}
}
