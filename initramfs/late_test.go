package initramfs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/driftcluster/drift/agent/boot"
)

// TestLateRoundTrip writes a late archive of files and a symlink and
// unpacks it as a node does: the same bytes, modes and link, in nested
// directories that did not exist, and the archive removed afterwards.
func TestLateRoundTrip(t *testing.T) {
	src := t.TempDir()
	write := func(name, body string, mode os.FileMode) string {
		p := filepath.Join(src, name)
		if err := os.WriteFile(p, []byte(body), mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	criu := write("criu", "\x7fELF criu", 0o755)
	lib := write("libnl.so.200.26.0", "library", 0o644)
	if err := os.Symlink("libnl.so.200.26.0", filepath.Join(src, "libnl.so.200")); err != nil {
		t.Fatal(err)
	}
	mod := write("xfs.ko", "module", 0o644)
	files := []File{
		{Src: criu, Dst: "usr/sbin/criu"},
		{Src: lib, Dst: "usr/lib/x86_64-linux-gnu/libnl.so.200.26.0"},
		{Src: filepath.Join(src, "libnl.so.200"), Dst: "usr/lib/x86_64-linux-gnu/libnl.so.200"},
		{Src: mod, Dst: "lib/modules/6.1.0/kernel/fs/xfs/xfs.ko"},
	}
	root := t.TempDir()
	archive := filepath.Join(root, boot.LatePath)
	if err := os.MkdirAll(filepath.Dir(archive), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteLate(archive, files); err != nil {
		t.Fatal(err)
	}
	n, err := boot.UnpackLate(archive, root)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("UnpackLate wrote %d files, want %d", n, len(files))
	}
	for _, f := range files {
		want, _ := os.Lstat(f.Src)
		got, err := os.Lstat(filepath.Join(root, f.Dst))
		if err != nil {
			t.Errorf("%s: %v", f.Dst, err)
			continue
		}
		if got.Mode() != want.Mode() {
			t.Errorf("%s: mode %v, want %v", f.Dst, got.Mode(), want.Mode())
		}
		if want.Mode()&os.ModeSymlink != 0 {
			wl, _ := os.Readlink(f.Src)
			if gl, _ := os.Readlink(filepath.Join(root, f.Dst)); gl != wl {
				t.Errorf("%s: link to %q, want %q", f.Dst, gl, wl)
			}
			continue
		}
		wb, _ := os.ReadFile(f.Src)
		if gb, _ := os.ReadFile(filepath.Join(root, f.Dst)); string(gb) != string(wb) {
			t.Errorf("%s: %q, want %q", f.Dst, gb, wb)
		}
	}
	if _, err := os.Stat(archive); !os.IsNotExist(err) {
		t.Errorf("archive still there after unpacking (err %v)", err)
	}
	// A node whose image has no late archive unpacks nothing.
	if n, err := boot.UnpackLate(archive, root); n != 0 || err != nil {
		t.Errorf("UnpackLate of a missing archive = %d, %v; want 0, nil", n, err)
	}
}
