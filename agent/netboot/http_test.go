package netboot

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHTTPServer(t *testing.T) {
	dir := t.TempDir()
	kernel, rd := make([]byte, 100_000), make([]byte, 333_333)
	rand.Read(kernel)
	rand.Read(rd)
	os.WriteFile(filepath.Join(dir, "vmlinuz"), kernel, 0o644)
	os.WriteFile(filepath.Join(dir, "initramfs.cpio.zst"), rd, 0o644)
	os.WriteFile(filepath.Join(filepath.Dir(dir), "secret"), []byte("no"), 0o644)
	tr := &Tracker{Neighbor: func(netip.Addr) string { return "52:54:00:00:00:09" }}
	s := NewHTTPServer(HTTPConfig{Logger: slog.New(slog.DiscardHandler), Dir: dir, Kernel: "vmlinuz", Initramfs: "initramfs.cpio.zst",
		Cmdline: "console=ttyS0 drift.role=worker", JoinPort: 7946, EnrollPort: 7949, EnrollFingerprint: strings.Repeat("0f", 32), Tracker: tr})
	os.WriteFile(filepath.Join(dir, "key.cpio"), []byte("the key"), 0o600)
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
	})
	base := "http://" + l.Addr().String()

	get := func(path, rng string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, base+path, nil)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	resp, script := get("/boot.ipxe", "")
	want := []string{"#!ipxe", "set base " + base + "\n", "kernel ${base}/vmlinuz initrd=initramfs.cpio.zst console=ttyS0 drift.role=worker drift.join=" + l.Addr().(*net.TCPAddr).IP.String() + ":7946" +
		" drift.enroll_head=" + l.Addr().(*net.TCPAddr).IP.String() + ":7949 drift.enroll_fp=" + strings.Repeat("0f", 32) + "\n",
		"initrd ${base}/initramfs.cpio.zst\n"}
	for _, w := range want {
		if resp.StatusCode != 200 || !strings.Contains(string(script), w) {
			t.Fatalf("GET /boot.ipxe: %s\n%s\nwant it to contain %q", resp.Status, script, w)
		}
	}
	if ms := tr.Machines(); len(ms) != 1 || ms[0].Stage != StageScript {
		t.Errorf("after the script: tracker = %+v, want stage %s", ms, StageScript)
	}
	if resp, b := get("/vmlinuz", ""); resp.StatusCode != 200 || !bytes.Equal(b, kernel) {
		t.Errorf("GET /vmlinuz: %s, %d bytes; want the kernel", resp.Status, len(b))
	}
	resp, b := get("/initramfs.cpio.zst", "bytes=1000-1999")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(b, rd[1000:2000]) {
		t.Errorf("GET /initramfs.cpio.zst bytes=1000-1999: %s, %d bytes; want 206 and those bytes", resp.Status, len(b))
	}
	if ms := tr.Machines(); ms[0].Stage != StageInitramfs {
		t.Errorf("tracker = %+v, want stage %s", ms, StageInitramfs)
	}
	for _, p := range []string{"/../secret", "/%2e%2e/secret", "/etc/passwd", "/undionly.kpxe", "/key.cpio", "/"} {
		if resp, _ := get(p, ""); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s: %s, want 404", p, resp.Status)
		}
	}
	if _, h := tr.Bytes(); h != int64(len(script)+len(kernel)+1000) {
		t.Errorf("HTTP bytes = %d, want %d", h, len(script)+len(kernel)+1000)
	}
}

func TestWorkerCmdline(t *testing.T) {
	for _, tt := range []struct{ head, want string }{
		{"console=tty0 console=ttyS0,115200 drift.role=head panic=-1", "console=tty0 console=ttyS0,115200 panic=-1 drift.role=worker"},
		{"BOOT_IMAGE=/boot/vmlinuz initrd=/boot/initramfs.cpio.zst console=ttyS0 drift.role=head drift.dhcp=proxy drift.range=10.1.0.0/24 drift.key=ab ip=dhcp drift.join=x:1",
			"console=ttyS0 drift.role=worker"},
		{"console=ttyS0 drift.role=head drift.lab=1 drift.enroll=auto drift.key=" + strings.Repeat("ab", 32), "console=ttyS0 drift.lab=1 drift.role=worker"},
		{"", "drift.role=worker"},
	} {
		if got := WorkerCmdline(tt.head); got != tt.want {
			t.Errorf("WorkerCmdline(%q) = %q, want %q", tt.head, got, tt.want)
		}
	}
}

// isoImage writes a file with an ISO 9660 primary volume descriptor
// labelled label.
func isoImage(t *testing.T, path, label string) {
	t.Helper()
	b := make([]byte, 17*2048)
	pvd := b[16*2048:]
	pvd[0] = 1
	copy(pvd[1:], "CD001")
	copy(pvd[40:72], label+strings.Repeat(" ", 32-len(label)))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestFindMedium(t *testing.T) {
	base := t.TempDir()
	sys, dev, mnt := filepath.Join(base, "sys"), filepath.Join(base, "dev"), filepath.Join(base, "mnt")
	for _, d := range []string{sys, dev} {
		os.MkdirAll(d, 0o755)
	}
	for _, n := range []string{"loop0", "sda", "sda1", "sr0", "vda"} {
		os.WriteFile(filepath.Join(sys, n), nil, 0o644)
	}
	os.WriteFile(filepath.Join(dev, "vda"), make([]byte, 100), 0o644) // too short
	isoImage(t, filepath.Join(dev, "sda"), "DEBIAN")
	isoImage(t, filepath.Join(dev, "sda1"), "DEBIAN")
	isoImage(t, filepath.Join(dev, "loop0"), MediumLabel) // loop devices are skipped
	var mounted []string
	mount := func(d, dir string) error {
		mounted = append(mounted, d)
		boot := filepath.Join(dir, "boot")
		os.MkdirAll(boot, 0o755)
		os.WriteFile(filepath.Join(boot, "vmlinuz"), []byte("k"), 0o644)
		os.WriteFile(filepath.Join(boot, "initramfs.cpio.zst"), []byte("i"), 0o644)
		os.WriteFile(filepath.Join(boot, "drift-0123"), []byte("v1.2\n"), 0o644)
		return nil
	}
	cfg := MediumConfig{SysBlock: sys, DevDir: dev, MountDir: mnt, Mount: mount}
	if _, err := FindMedium(cfg); !errors.Is(err, ErrNoMedium) {
		t.Fatalf("FindMedium() without a drift ISO = %v, want ErrNoMedium", err)
	}
	isoImage(t, filepath.Join(dev, "sr0"), MediumLabel)
	m, err := FindMedium(cfg)
	if err != nil {
		t.Fatalf("FindMedium() = %v", err)
	}
	want := Medium{Device: filepath.Join(dev, "sr0"), Dir: mnt, BootDir: filepath.Join(mnt, "boot"), Kernel: "vmlinuz", Initramfs: "initramfs.cpio.zst", Version: "v1.2"}
	if *m != want || len(mounted) != 1 {
		t.Errorf("FindMedium() = %+v (mounted %v), want %+v mounted once", *m, mounted, want)
	}
	// An agent restart finds it mounted.
	if m, err := FindMedium(cfg); err != nil || m.BootDir != want.BootDir || len(mounted) != 1 {
		t.Errorf("FindMedium() again = %+v, %v (mounted %v); want the mounted medium reused", m, err, mounted)
	}
}
