package netboot

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

var headAddr = netip.MustParseAddr("192.168.7.2")

// pxeRequest builds a client request; vendor "" and arch < 0 leave the
// options out.
func pxeRequest(t testing.TB, mt dhcpv4.MessageType, vendor string, arch int, userClass string) *dhcpv4.DHCPv4 {
	t.Helper()
	mods := []dhcpv4.Modifier{dhcpv4.WithMessageType(mt), dhcpv4.WithHwAddr(net.HardwareAddr{0x52, 0x54, 0, 0xd1, 0, 2})}
	if vendor != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClassIdentifier(vendor)))
	}
	if arch >= 0 {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptClientArch(iana.Arch(arch))))
	}
	if userClass != "" {
		mods = append(mods, dhcpv4.WithUserClass(userClass, false))
	}
	mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier, []byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})))
	req, err := dhcpv4.New(mods...)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestProxyReply(t *testing.T) {
	const biosVendor = "PXEClient:Arch:00000:UNDI:002001"
	tests := []struct {
		name     string
		req      *dhcpv4.DHCPv4
		port4011 bool
		httpPort int
		wantType dhcpv4.MessageType // MessageTypeNone: no reply
		wantFile string
		wantErr  error // errors.Is; errAny: any error
	}{
		{name: "BIOS PXE discover", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, biosVendor, 0, ""),
			wantType: dhcpv4.MessageTypeOffer, wantFile: FileBIOS},
		{name: "PXE without option 93 is BIOS", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "PXEClient", -1, ""),
			wantType: dhcpv4.MessageTypeOffer, wantFile: FileBIOS},
		{name: "UEFI x86-64 (7)", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "PXEClient:Arch:00007:UNDI:003016", 7, ""),
			wantType: dhcpv4.MessageTypeOffer, wantFile: FileUEFI},
		{name: "UEFI BC (9)", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "PXEClient:Arch:00009:UNDI:003016", 9, ""),
			wantType: dhcpv4.MessageTypeOffer, wantFile: FileUEFI},
		{name: "iPXE gets the script", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, biosVendor, 0, "iPXE"),
			wantType: dhcpv4.MessageTypeOffer, wantFile: "http://192.168.7.2/boot.ipxe"},
		{name: "iPXE, RFC 3004 user class", req: func() *dhcpv4.DHCPv4 {
			r := pxeRequest(t, dhcpv4.MessageTypeDiscover, biosVendor, 0, "")
			dhcpv4.WithUserClass("iPXE", true)(r)
			return r
		}(), wantType: dhcpv4.MessageTypeOffer, wantFile: "http://192.168.7.2/boot.ipxe"},
		{name: "iPXE, HTTP on another port", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "PXEClient:Arch:00007:UNDI:003016", 7, "iPXE"),
			httpPort: 8080, wantType: dhcpv4.MessageTypeOffer, wantFile: "http://192.168.7.2:8080/boot.ipxe"},
		{name: "port 4011 request gets an ACK", req: pxeRequest(t, dhcpv4.MessageTypeRequest, "PXEClient:Arch:00007:UNDI:003016", 7, ""),
			port4011: true, wantType: dhcpv4.MessageTypeAck, wantFile: FileUEFI},
		{name: "non-PXE client ignored", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "", -1, ""),
			wantErr: ErrNotPXE},
		{name: "other vendor class ignored", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "android-dhcp-14", -1, ""),
			wantErr: ErrNotPXE},
		{name: "request on 67 is the LAN server's", req: pxeRequest(t, dhcpv4.MessageTypeRequest, biosVendor, 0, "")},
		{name: "discover on 4011 refused", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, biosVendor, 0, ""),
			port4011: true, wantErr: errAny},
		{name: "ARM64 UEFI refused", req: pxeRequest(t, dhcpv4.MessageTypeDiscover, "PXEClient:Arch:00011:UNDI:003016", 11, ""),
			wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := &Tracker{Now: func() time.Time { return time.Unix(100, 0) }}
			p := &PXE{HTTPPort: tt.httpPort, Tracker: tr}
			reply, err := proxyReply(p, tt.req, tt.port4011, headAddr)
			if tt.wantErr != nil {
				if err == nil || tt.wantErr != errAny && !errors.Is(err, tt.wantErr) {
					t.Fatalf("proxyReply() error = %v, want %v", err, tt.wantErr)
				}
				if reply != nil {
					t.Errorf("proxyReply() replied %v with an error", reply.MessageType())
				}
				return
			}
			if err != nil {
				t.Fatalf("proxyReply() error = %v", err)
			}
			if tt.wantType == dhcpv4.MessageTypeNone {
				if reply != nil {
					t.Fatalf("proxyReply() = %v, want no reply", reply.Summary())
				}
				return
			}
			if reply == nil {
				t.Fatalf("proxyReply() = nil, want %v", tt.wantType)
			}
			checkBootReply(t, reply, tt.wantType, tt.wantFile, tt.req.ClassIdentifier() != "")
			if !reply.YourIPAddr.IsUnspecified() {
				t.Errorf("yiaddr = %v, want 0.0.0.0: a proxy hands out no address", reply.YourIPAddr)
			}
			if got := addr4(reply.ServerIdentifier()); got != headAddr {
				t.Errorf("server identifier = %v, want %v", got, headAddr)
			}
			if ms := tr.Machines(); len(ms) != 1 || ms[0].Stage != StageDHCP || ms[0].MAC != "52:54:00:d1:00:02" {
				t.Errorf("tracker = %+v, want the client at stage dhcp", ms)
			}
		})
	}
}

var errAny = errors.New("any error")

func checkBootReply(t *testing.T, reply *dhcpv4.DHCPv4, mt dhcpv4.MessageType, file string, pxeVendor bool) {
	t.Helper()
	if reply.MessageType() != mt {
		t.Errorf("message type = %v, want %v", reply.MessageType(), mt)
	}
	if reply.BootFileName != file || reply.BootFileNameOption() != file {
		t.Errorf("boot file = %q (option 67 %q), want %q", reply.BootFileName, reply.BootFileNameOption(), file)
	}
	if got := addr4(reply.ServerIPAddr); got != headAddr {
		t.Errorf("siaddr = %v, want %v", got, headAddr)
	}
	if got := reply.TFTPServerName(); got != headAddr.String() {
		t.Errorf("option 66 = %q, want %q", got, headAddr)
	}
	if got, want := reply.ClassIdentifier(), map[bool]string{true: "PXEClient"}[pxeVendor]; got != want {
		t.Errorf("option 60 = %q, want %q", got, want)
	}
	if len(reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier)) != 17 {
		t.Errorf("option 97 (client UUID) not echoed")
	}
}

func TestDecorate(t *testing.T) {
	yi := netip.MustParseAddr("192.168.7.50")
	tests := []struct {
		name     string
		req      *dhcpv4.DHCPv4
		mt       dhcpv4.MessageType
		wantFile string // "": reply unchanged
	}{
		{"PXE offer", pxeRequest(t, dhcpv4.MessageTypeDiscover, "PXEClient:Arch:00000:UNDI:002001", 0, ""), dhcpv4.MessageTypeOffer, FileBIOS},
		{"UEFI ack", pxeRequest(t, dhcpv4.MessageTypeRequest, "PXEClient:Arch:00007:UNDI:003016", 7, ""), dhcpv4.MessageTypeAck, FileUEFI},
		{"iPXE ack", pxeRequest(t, dhcpv4.MessageTypeRequest, "PXEClient:Arch:00000:UNDI:002001", 0, "iPXE"), dhcpv4.MessageTypeAck, "http://192.168.7.2/boot.ipxe"},
		{"plain client", pxeRequest(t, dhcpv4.MessageTypeDiscover, "", -1, ""), dhcpv4.MessageTypeOffer, ""},
		{"NAK untouched", pxeRequest(t, dhcpv4.MessageTypeRequest, "PXEClient", 0, ""), dhcpv4.MessageTypeNak, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, err := dhcpv4.NewReplyFromRequest(tt.req, dhcpv4.WithMessageType(tt.mt),
				dhcpv4.WithYourIP(yi.AsSlice()), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(headAddr.AsSlice())))
			if err != nil {
				t.Fatal(err)
			}
			tr := &Tracker{}
			file, err := (&PXE{Tracker: tr}).decorate(tt.req, reply)
			if err != nil {
				t.Fatalf("decorate() error = %v", err)
			}
			if file != tt.wantFile {
				t.Fatalf("decorate() = %q, want %q", file, tt.wantFile)
			}
			if tt.wantFile == "" {
				if reply.BootFileName != "" || reply.BootFileNameOption() != "" || len(tr.Machines()) != 0 {
					t.Errorf("reply got boot options %q / machines %v, want none", reply.BootFileName, tr.Machines())
				}
				return
			}
			checkBootReply(t, reply, tt.mt, tt.wantFile, false) // no option 60 from the full server
			// iPXE is told not to wait for ProxyDHCP offers; a PXE ROM gets no iPXE option.
			wantEB := []byte(nil)
			if strings.HasPrefix(tt.wantFile, "http://") {
				wantEB = ipxeNoProxyDHCP
			}
			if got := reply.GetOneOption(dhcpv4.OptionEtherboot); string(got) != string(wantEB) {
				t.Errorf("option 175 = %v, want %v", got, wantEB)
			}
			if got := addr4(reply.YourIPAddr); got != yi {
				t.Errorf("yiaddr = %v, want %v kept", got, yi)
			}
			if ms := tr.Machines(); len(ms) != 1 || ms[0].Addr != yi {
				t.Errorf("tracker = %+v, want the client at %v", ms, yi)
			}
		})
	}
}

func TestTrackerBounded(t *testing.T) {
	now := time.Unix(0, 0)
	tr := &Tracker{Max: 3, Now: func() time.Time { now = now.Add(time.Second); return now }, Neighbor: func(netip.Addr) string { return "" }}
	for i := range 10 {
		tr.DHCP(net.HardwareAddr{2, 0, 0, 0, 0, byte(i)}.String(), "bios", netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}))
	}
	ms := tr.Machines()
	if len(ms) != 3 || ms[0].MAC != "02:00:00:00:00:09" || ms[2].MAC != "02:00:00:00:00:07" {
		t.Fatalf("Machines() = %+v, want the last 3, newest first", ms)
	}
	// The address of a kept machine maps to it; an evicted one's does not.
	tr.Served(netip.MustParseAddr("10.0.0.9"), StageKernel)
	tr.Served(netip.MustParseAddr("10.0.0.1"), StageKernel)
	ms = tr.Machines()
	if len(ms) != 3 || ms[0].MAC != "02:00:00:00:00:08" || ms[0].Stage != StageKernel {
		t.Fatalf("after Served: %+v, want 02:00:00:00:00:08 at kernel first", ms)
	}
}

func TestParseARP(t *testing.T) {
	const table = `IP address       HW type     Flags       HW address            Mask     Device
10.77.0.12       0x1         0x2         52:54:00:d1:00:02     *        eth0
10.77.0.13       0x1         0x0         00:00:00:00:00:00     *        eth0
`
	for _, tt := range []struct{ addr, want string }{
		{"10.77.0.12", "52:54:00:d1:00:02"}, {"10.77.0.13", ""}, {"10.77.0.1", ""},
	} {
		if got := parseARP(strings.NewReader(table), netip.MustParseAddr(tt.addr)); got != tt.want {
			t.Errorf("parseARP(%s) = %q, want %q", tt.addr, got, tt.want)
		}
	}
}
