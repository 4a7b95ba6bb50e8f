package netboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/internal/netnstest"
)

// pxeTree makes a PXE tree with two random "iPXE binaries", a symlink
// that leaves it, and a secret file beside it; it returns the tree.
func pxeTree(t testing.TB) (dir string, files map[string][]byte) {
	t.Helper()
	base := t.TempDir()
	dir = filepath.Join(base, "pxe")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	files = map[string][]byte{FileBIOS: make([]byte, 74213), FileUEFI: make([]byte, 300_001), "sub/x.bin": []byte("x\n")}
	for name, b := range files {
		rand.Read(b)
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(base, "secret"), []byte("outside the tree\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../secret", filepath.Join(dir, "escape")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "passwd")); err != nil {
		t.Fatal(err)
	}
	return dir, files
}

// startTFTP serves dir on a loopback port until the test ends.
func startTFTP(t testing.TB, dir string, tr *Tracker) (port string) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewTFTPServer(TFTPConfig{Dir: dir, Tracker: tr, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
	})
	_, port, _ = net.SplitHostPort(conn.LocalAddr().String())
	return port
}

// TestTFTPRealClient fetches the tree with tftp-hpa, the client PXE
// tooling is tested against, and tries to leave it.
func TestTFTPRealClient(t *testing.T) {
	netnstest.Require(t) // loopback only, but in the test's own namespace
	tftpBin, err := exec.LookPath("tftp")
	if err != nil {
		t.Skip("tftp-hpa not installed (apt-get install tftp-hpa)")
	}
	dir, files := pxeTree(t)
	tr := &Tracker{Neighbor: func(netip.Addr) string { return "52:54:00:00:00:01" }}
	port := startTFTP(t, dir, tr)
	out := t.TempDir()

	get := func(t *testing.T, name string) (data []byte, output string) {
		t.Helper()
		dst := filepath.Join(out, strings.ReplaceAll(name, "/", "_"))
		os.Remove(dst)
		cmd := exec.Command(tftpBin, "127.0.0.1", port, "-m", "binary", "-v", "-c", "get", name, dst)
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(cmd.Args, " "), err, b)
		}
		data, _ = os.ReadFile(dst)
		return data, string(b)
	}

	for _, name := range []string{FileBIOS, FileUEFI, "sub/x.bin"} {
		t.Run("get "+name, func(t *testing.T) {
			got, output := get(t, name)
			if !bytes.Equal(got, files[name]) {
				t.Fatalf("tftp get %s: %d bytes, want %d identical bytes\n%s", name, len(got), len(files[name]), output)
			}
		})
	}
	for _, tt := range []struct{ name, want string }{
		{"../etc/passwd", "path refused"},
		{"/etc/passwd", "path refused"},
		{"sub/../" + FileBIOS, "path refused"},
		{"escape", "path refused"}, // symlink to ../secret
		{"passwd", "path refused"}, // symlink to /etc/passwd
		{"nosuchfile", "file not found"},
		{"sub", "not a file"},
	} {
		t.Run("refuse "+tt.name, func(t *testing.T) {
			got, output := get(t, tt.name)
			if len(got) != 0 || !strings.Contains(output, "Error code 1: ") || !strings.Contains(output, tt.want) {
				t.Fatalf("tftp get %s: got %d bytes and %q, want a TFTP error containing %q", tt.name, len(got), output, tt.want)
			}
		})
	}
	t.Run("write refused", func(t *testing.T) {
		src := filepath.Join(out, "upload")
		os.WriteFile(src, []byte("overwrite\n"), 0o644)
		cmd := exec.Command(tftpBin, "127.0.0.1", port, "-m", "binary", "-v", "-c", "put", src, FileBIOS)
		b, _ := cmd.CombinedOutput()
		if !strings.Contains(string(b), "Error code 1: ") || !strings.Contains(string(b), "read-only") {
			t.Errorf("tftp put: %q, want a read-only TFTP error", b)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, FileBIOS)); !bytes.Equal(got, files[FileBIOS]) {
			t.Errorf("%s changed after a refused write", FileBIOS)
		}
		if _, err := os.Stat(filepath.Join(dir, "upload")); err == nil {
			t.Errorf("a write created a file in the tree")
		}
	})
	t.Run("tracked", func(t *testing.T) {
		ms := tr.Machines()
		if len(ms) != 1 || ms[0].Stage != StageIPXE {
			t.Errorf("tracker = %+v, want one machine at %s", ms, StageIPXE)
		}
		tftpBytes, _ := tr.Bytes()
		if want := int64(len(files[FileBIOS]) + len(files[FileUEFI]) + len(files["sub/x.bin"])); tftpBytes != want {
			t.Errorf("TFTP bytes = %d, want %d", tftpBytes, want)
		}
	})
}

func TestCheckTFTPName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"undionly.kpxe", true}, {"efi/ipxe.efi", true}, {"a..b", true},
		{"", false}, {"/undionly.kpxe", false}, {"../x", false}, {"a/../b", false}, {"./a", false},
		{"a//b", false}, {"a/", false}, {`a\b`, false}, {"C:x", false}, {"a\x00b", false}, {"a\nb", false},
		{strings.Repeat("a", 256), false},
	} {
		if err := checkTFTPName(tt.name); (err == nil) != tt.ok {
			t.Errorf("checkTFTPName(%q) = %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}

// The TFTP server must shut down promptly even with a transfer stalled.
func TestTFTPShutdown(t *testing.T) {
	dir, _ := pxeTree(t)
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewTFTPServer(TFTPConfig{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, conn) }()
	// A read request whose client never acknowledges.
	c, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(append(append([]byte{0, 1}, FileUEFI...), append([]byte{0}, "octet\x00"...)...))
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve() = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve() did not return 10 s after cancel")
	}
}
