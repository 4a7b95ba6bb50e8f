package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Device is a block device holding a file system.
type Device struct {
	Path   string // e.g. /dev/vdb1
	FSType string // the file system type to mount it as: ext4, xfs or vfat
	Label  string
}

// ErrNoLabel reports that no block device carries the label asked for.
var ErrNoLabel = errors.New("no partition with that label")

// FindLabel looks at every block device listed in sysBlock (normally
// /sys/class/block: disks and their partitions) and returns the first,
// by name, whose ext2/3/4, xfs or vfat file system is labelled label. The
// devices are opened in devDir (normally /dev). Devices that cannot be
// read (an empty CD drive) are skipped.
func FindLabel(sysBlock, devDir, label string) (Device, error) {
	ents, err := os.ReadDir(sysBlock)
	if err != nil {
		return Device{}, fmt.Errorf("find label %s: %w", label, err)
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		n := e.Name()
		if strings.HasPrefix(n, "ram") || strings.HasPrefix(n, "zram") {
			continue
		}
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := filepath.Join(devDir, n)
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		fstype, l, err := ReadLabel(f)
		f.Close()
		if err == nil && l == label {
			return Device{Path: p, FSType: fstype, Label: l}, nil
		}
	}
	return Device{}, fmt.Errorf("find label %s in %s: %w", label, sysBlock, ErrNoLabel)
}

// ErrUnknownFS reports a device whose file system ReadLabel does not know.
var ErrUnknownFS = errors.New("no ext2/3/4, xfs or vfat file system")

// ReadLabel reads the file system type and label from the superblock at
// the start of r (a block device or an image file). It knows ext2/3/4
// (reported as ext4, whose driver mounts all three), xfs and vfat.
func ReadLabel(r io.ReaderAt) (fstype, label string, err error) {
	b := make([]byte, 2048)
	n, err := r.ReadAt(b, 0)
	if n < 512 {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return "", "", fmt.Errorf("read superblock: %w", err)
	}
	b = b[:n]
	// ext2/3/4: superblock at 1024, magic 0xEF53 at 0x38, name at 0x78.
	if len(b) >= 1024+0x88 && binary.LittleEndian.Uint16(b[1024+0x38:]) == 0xEF53 {
		return "ext4", cString(b[1024+0x78 : 1024+0x88]), nil
	}
	// xfs: "XFSB" at 0, sb_fname (12 bytes) at 108.
	if bytes.Equal(b[:4], []byte("XFSB")) {
		return "xfs", cString(b[108:120]), nil
	}
	// FAT: boot signature 55 AA; FAT32's extended boot record at 64,
	// FAT12/16's at 36: signature 0x29, label 7 bytes on, type 18 bytes on.
	if b[510] == 0x55 && b[511] == 0xAA {
		for _, ebr := range []int{64, 36} {
			if b[ebr+2] == 0x29 && bytes.HasPrefix(b[ebr+18:ebr+26], []byte("FAT")) {
				l := strings.TrimRight(string(b[ebr+7:ebr+18]), " \x00")
				if l == "NO NAME" {
					l = ""
				}
				return "vfat", l, nil
			}
		}
	}
	return "", "", ErrUnknownFS
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
