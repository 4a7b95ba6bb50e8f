package netboot

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Where the head finds what it serves. The kernel and the initramfs come
// from its boot medium: the drift ISO, as a CD or written to a USB stick
// (the hybrid image puts the ISO 9660 volume at the start of the whole
// disk), found by its volume label and mounted read-only. So the head
// serves exactly the image it booted, and the initramfs does not carry a
// second copy of itself. The iPXE binaries are small: the medium's /pxe,
// else the image's /usr/share/drift/pxe.

// MediumLabel is the ISO 9660 volume label of drift's ISO.
const MediumLabel = "DRIFT"

// ImagePXEDir is where an image may carry the iPXE binaries.
const ImagePXEDir = "/usr/share/drift/pxe"

// ErrNoMedium reports that no block device holds a drift ISO.
var ErrNoMedium = errors.New("no boot medium: no block device holds an ISO 9660 volume labelled " + MediumLabel +
	" (boot the head from the drift ISO, as a CD or a USB stick, so that it can serve the image to the others)")

// MediumConfig says where to look for the boot medium.
type MediumConfig struct {
	Label    string // volume label; "": MediumLabel
	SysBlock string // "": /sys/class/block
	DevDir   string // "": /dev
	MountDir string // where to mount it; required
	// Mount mounts dev on dir read-only as ISO 9660; nil: mount(2).
	Mount func(dev, dir string) error
}

// Medium is the head's boot medium, mounted.
type Medium struct {
	Device    string // e.g. /dev/sr0
	Dir       string // where it is mounted
	BootDir   string // its /boot: the kernel and the initramfs
	Kernel    string // file name in BootDir
	Initramfs string // file name in BootDir
	Version   string // the drift version its marker file names; "" if none
}

// FindMedium finds the block device that holds the drift ISO, mounts it
// (or reuses it where an earlier agent mounted it) and finds the kernel
// and initramfs on it.
func FindMedium(cfg MediumConfig) (*Medium, error) {
	label := cfg.Label
	if label == "" {
		label = MediumLabel
	}
	sys, dev := cfg.SysBlock, cfg.DevDir
	if sys == "" {
		sys = "/sys/class/block"
	}
	if dev == "" {
		dev = "/dev"
	}
	mount := cfg.Mount
	if mount == nil {
		mount = mountISO
	}
	if m, err := mediumFiles(cfg.MountDir); err == nil {
		m.Device = "(mounted before)"
		return m, nil
	}
	ents, err := os.ReadDir(sys)
	if err != nil {
		return nil, fmt.Errorf("find boot medium: %w", err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") || strings.HasPrefix(n, "loop") {
			continue
		}
		names = append(names, n)
	}
	sort.Strings(names) // sr0 and whole disks before their partitions
	var tried []string
	for _, n := range names {
		path := filepath.Join(dev, n)
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		l, ok := isoLabel(f)
		f.Close()
		if !ok || l != label {
			continue
		}
		if err := os.MkdirAll(cfg.MountDir, 0o755); err != nil {
			return nil, fmt.Errorf("find boot medium: %w", err)
		}
		if err := mount(path, cfg.MountDir); err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		m, err := mediumFiles(cfg.MountDir)
		if err != nil {
			unix.Unmount(cfg.MountDir, 0)
			tried = append(tried, fmt.Sprintf("%s: %v", path, err))
			continue
		}
		m.Device = path
		return m, nil
	}
	if len(tried) > 0 {
		return nil, fmt.Errorf("find boot medium: %w; devices labelled %s failed: %s", ErrNoMedium, label, strings.Join(tried, "; "))
	}
	return nil, ErrNoMedium
}

func mountISO(dev, dir string) error {
	if err := unix.Mount(dev, dir, "iso9660", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		return fmt.Errorf("mount %s on %s: %w", dev, dir, err)
	}
	return nil
}

// isoLabel reads the volume identifier of an ISO 9660 primary volume
// descriptor (sector 16 of 2048 bytes).
func isoLabel(r io.ReaderAt) (string, bool) {
	var pvd [2048]byte
	if _, err := r.ReadAt(pvd[:], 16*2048); err != nil {
		return "", false
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return "", false
	}
	return string(bytes.TrimRight(pvd[40:72], " \x00")), true
}

// mediumFiles finds the kernel, the initramfs and the version marker on a
// mounted medium.
func mediumFiles(dir string) (*Medium, error) {
	boot := filepath.Join(dir, "boot")
	m := &Medium{Dir: dir, BootDir: boot, Kernel: "vmlinuz"}
	if fi, err := os.Stat(filepath.Join(boot, m.Kernel)); err != nil || !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("no kernel at /boot/vmlinuz on the medium")
	}
	rds, _ := filepath.Glob(filepath.Join(boot, "initramfs*"))
	if len(rds) == 0 {
		return nil, fmt.Errorf("no initramfs at /boot/initramfs* on the medium")
	}
	m.Initramfs = filepath.Base(rds[0])
	if marks, _ := filepath.Glob(filepath.Join(boot, "drift-*")); len(marks) > 0 {
		b, _ := os.ReadFile(marks[0])
		m.Version = strings.TrimSpace(string(b))
	}
	return m, nil
}

// PXEDir returns the first of dirs that holds an iPXE binary.
func PXEDir(dirs ...string) (string, error) {
	for _, d := range dirs {
		for _, f := range []string{FileBIOS, FileUEFI} {
			if fi, err := os.Stat(filepath.Join(d, f)); err == nil && fi.Mode().IsRegular() {
				return d, nil
			}
		}
	}
	return "", fmt.Errorf("no iPXE binaries (%s, %s) in %s: the image must carry them for PXE clients that are not iPXE already",
		FileBIOS, FileUEFI, strings.Join(dirs, " or "))
}
