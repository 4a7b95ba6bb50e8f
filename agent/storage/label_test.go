package storage

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// mkfs makes a file system image of sizeMB with the host's mkfs tool,
// skipping the test when the tool is missing.
func mkfs(t *testing.T, sizeMB int64, tool string, args ...string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		t.Skipf("%s not installed (apt-get install e2fsprogs dosfstools)", tool)
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, sizeMB<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(p, append(args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("%s %q: %v\n%s", tool, args, err, out)
	}
	return img
}

// xfsImage is the start of an xfs superblock (mkfs.xfs is seldom installed).
func xfsImage(t *testing.T, label string) string {
	b := make([]byte, 4096)
	copy(b, "XFSB")
	copy(b[108:120], label)
	p := filepath.Join(t.TempDir(), "xfs.img")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadLabel(t *testing.T) {
	tests := []struct {
		name      string
		image     func(t *testing.T) string
		wantFS    string
		wantLabel string
		wantErrIs error
	}{
		{name: "ext4", image: func(t *testing.T) string { return mkfs(t, 8, "mkfs.ext4", "-q", "-F", "-L", "DRIFT-DATA") }, wantFS: "ext4", wantLabel: "DRIFT-DATA"},
		{name: "ext4 other label", image: func(t *testing.T) string { return mkfs(t, 8, "mkfs.ext4", "-q", "-F", "-L", "scratch") }, wantFS: "ext4", wantLabel: "scratch"},
		{name: "ext2 no label", image: func(t *testing.T) string { return mkfs(t, 8, "mkfs.ext4", "-q", "-F", "-t", "ext2") }, wantFS: "ext4", wantLabel: ""},
		{name: "vfat FAT16", image: func(t *testing.T) string { return mkfs(t, 20, "mkfs.vfat", "-F", "16", "-n", "DRIFT-DATA") }, wantFS: "vfat", wantLabel: "DRIFT-DATA"},
		{name: "vfat FAT32", image: func(t *testing.T) string { return mkfs(t, 40, "mkfs.vfat", "-F", "32", "-n", "DRIFT-DATA") }, wantFS: "vfat", wantLabel: "DRIFT-DATA"},
		{name: "vfat no label", image: func(t *testing.T) string { return mkfs(t, 20, "mkfs.vfat", "-F", "16") }, wantFS: "vfat", wantLabel: ""},
		{name: "xfs", image: func(t *testing.T) string { return xfsImage(t, "DRIFT-DATA") }, wantFS: "xfs", wantLabel: "DRIFT-DATA"},
		{name: "zeros", image: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "zero.img")
			os.WriteFile(p, make([]byte, 1<<20), 0o644)
			return p
		}, wantErrIs: ErrUnknownFS},
		{name: "too short", image: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "short.img")
			os.WriteFile(p, bytes.Repeat([]byte{0xEF}, 100), 0o644)
			return p
		}, wantErrIs: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := os.Open(tt.image(t))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fs, label, err := ReadLabel(f)
			if tt.wantErrIs != nil {
				if err == nil || (tt.wantErrIs != errAny && !errors.Is(err, tt.wantErrIs)) {
					t.Fatalf("ReadLabel = %q, %q, %v; want error %v", fs, label, err, tt.wantErrIs)
				}
				return
			}
			if err != nil || fs != tt.wantFS || label != tt.wantLabel {
				t.Errorf("ReadLabel = %q, %q, %v; want %q, %q", fs, label, err, tt.wantFS, tt.wantLabel)
			}
		})
	}
}

var errAny = errors.New("any error")

// TestFindLabel lays out a fake /sys/class/block and /dev with image
// files as devices.
func TestFindLabel(t *testing.T) {
	sys, dev := t.TempDir(), t.TempDir()
	add := func(name, img string) {
		if err := os.Mkdir(filepath.Join(sys, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if img != "" {
			b, err := os.ReadFile(img)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dev, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("sr0", "")                         // an empty CD drive: no device to open
	add("ram0", xfsImage(t, "DRIFT-DATA")) // ram disks are never the backing store
	add("vda", mkfs(t, 8, "mkfs.ext4", "-q", "-F", "-L", "other"))
	add("vdb", "")
	add("vdb1", mkfs(t, 8, "mkfs.ext4", "-q", "-F", "-L", "DRIFT-DATA"))

	d, err := FindLabel(sys, dev, "DRIFT-DATA")
	if err != nil {
		t.Fatalf("FindLabel: %v", err)
	}
	if want := (Device{Path: filepath.Join(dev, "vdb1"), FSType: "ext4", Label: "DRIFT-DATA"}); d != want {
		t.Errorf("FindLabel = %+v, want %+v", d, want)
	}
	if _, err := FindLabel(sys, dev, "NOPE"); !errors.Is(err, ErrNoLabel) {
		t.Errorf("FindLabel(NOPE) = %v, want ErrNoLabel", err)
	}
}
