package netboot

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/pin/tftp/v3"
)

// FuzzPXEDHCP feeds packets to the PXE handling of both DHCP modes: the
// proxy's answers on ports 67 and 4011 and the boot options the full
// server adds. Nothing may panic; a proxy reply never hands out an
// address and goes only to PXE or iPXE clients.
func FuzzPXEDHCP(f *testing.F) {
	for _, r := range []*dhcpv4.DHCPv4{
		pxeRequest(f, dhcpv4.MessageTypeDiscover, "PXEClient:Arch:00000:UNDI:002001", 0, ""),
		pxeRequest(f, dhcpv4.MessageTypeRequest, "PXEClient:Arch:00007:UNDI:003016", 7, ""),
		pxeRequest(f, dhcpv4.MessageTypeDiscover, "PXEClient", 9, "iPXE"),
		pxeRequest(f, dhcpv4.MessageTypeDiscover, "", -1, ""),
	} {
		f.Add(r.ToBytes())
	}
	f.Add([]byte{1, 1, 6, 0})
	p := &PXE{Tracker: &Tracker{Max: 8}}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := dhcpv4.FromBytes(b)
		if err != nil {
			return
		}
		_, isPXE := parsePXE(req)
		for _, port4011 := range []bool{false, true} {
			reply, err := proxyReply(p, req, port4011, headAddr)
			if err != nil || reply == nil {
				continue
			}
			if !isPXE {
				t.Fatalf("proxy answered a client that is not PXE: %s", req.Summary())
			}
			if !reply.YourIPAddr.IsUnspecified() {
				t.Fatalf("proxy reply hands out %s", reply.YourIPAddr)
			}
			if _, err := dhcpv4.FromBytes(reply.ToBytes()); err != nil {
				t.Fatalf("proxy reply does not parse: %v", err)
			}
		}
		for _, mt := range []dhcpv4.MessageType{dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck} {
			reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(mt),
				dhcpv4.WithOption(dhcpv4.OptServerIdentifier(headAddr.AsSlice())))
			if err != nil {
				continue
			}
			file, err := p.decorate(req, reply)
			if !isPXE && file != "" || isPXE && err == nil && file == "" {
				t.Fatalf("decorate() = %q, %v for PXE=%v client", file, err, isPXE)
			}
		}
		if n := len(p.Tracker.Machines()); n > 8 {
			t.Fatalf("tracker holds %d machines, bound is 8", n)
		}
	})
}

// FuzzTFTPName checks that no request name opens anything but a regular
// file inside the tree.
func FuzzTFTPName(f *testing.F) {
	dir, files := pxeTree(f)
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer root.Close()
	secret, _ := os.ReadFile(filepath.Join(filepath.Dir(dir), "secret"))
	for _, s := range []string{FileBIOS, "sub/x.bin", "../secret", "/etc/passwd", "escape", "passwd", "sub/../escape", "./" + FileUEFI} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		fh, err := openInTree(root, name)
		if err != nil {
			return
		}
		defer fh.Close()
		b, _ := io.ReadAll(fh)
		want, ok := files[name]
		if !ok || !bytes.Equal(b, want) || bytes.Equal(b, secret) {
			t.Fatalf("openInTree(%q) opened %d bytes that are not the tree's file %q", name, len(b), name)
		}
	})
}

var fuzzTFTP struct {
	once sync.Once
	addr string
	want []byte
	raw  net.PacketConn // sends the fuzzed datagrams
	err  error
}

// FuzzTFTPPacket sends raw datagrams to a running TFTP server, each
// followed by a real read of a file: the server must keep serving.
func FuzzTFTPPacket(f *testing.F) {
	f.Add([]byte("\x00\x01undionly.kpxe\x00octet\x00"))
	f.Add([]byte("\x00\x01../etc/passwd\x00octet\x00blksize\x0065464\x00"))
	f.Add([]byte("\x00\x02undionly.kpxe\x00octet\x00"))
	f.Add([]byte("\x00\x01x"))
	f.Add([]byte("\x00\x05\x00\x01oops\x00"))
	f.Add([]byte{0, 4, 0, 1})
	fuzzTFTP.once.Do(func() {
		dir, files := pxeTree(f)
		// Outlives this target on purpose: the server is shared by the
		// fuzz worker's iterations; the process exit ends it.
		conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			fuzzTFTP.err = err
			return
		}
		// The fuzzed datagrams go from one socket that stays open: a
		// datagram that starts a transfer makes the server send to its
		// port for a while, and from a socket closed at once, that port
		// could be the next client's (it would read another file).
		if fuzzTFTP.raw, err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			fuzzTFTP.err = err
			return
		}
		s := NewTFTPServer(TFTPConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler), Timeout: 20 * time.Millisecond})
		go s.Serve(context.Background(), conn)
		fuzzTFTP.addr, fuzzTFTP.want = conn.LocalAddr().String(), files["sub/x.bin"]
	})
	if fuzzTFTP.err != nil {
		f.Fatal(fuzzTFTP.err)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		to, err := net.ResolveUDPAddr("udp4", fuzzTFTP.addr)
		if err != nil {
			t.Fatal(err)
		}
		fuzzTFTP.raw.WriteTo(b, to)
		cl, err := tftp.NewClient(fuzzTFTP.addr)
		if err != nil {
			t.Fatal(err)
		}
		cl.SetTimeout(time.Second)
		wt, err := cl.Receive("sub/x.bin", "octet")
		if err != nil {
			t.Fatalf("server stopped answering after %q: %v", b, err)
		}
		var got bytes.Buffer
		if _, err := wt.WriteTo(&got); err != nil || !bytes.Equal(got.Bytes(), fuzzTFTP.want) {
			t.Fatalf("read after %q: %v, %q", b, err, got.Bytes())
		}
	})
}
