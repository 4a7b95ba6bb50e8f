package imagebuild

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/driftcluster/drift/configs/boot"
)

// Data files the ISO takes from Debian packages installed on the host.
var (
	isolinuxFiles = map[string]string{ // file -> package
		"/usr/lib/ISOLINUX/isolinux.bin":              "isolinux",
		"/usr/lib/syslinux/modules/bios/ldlinux.c32":  "syslinux-common",
		"/usr/lib/syslinux/modules/bios/menu.c32":     "syslinux-common",
		"/usr/lib/syslinux/modules/bios/libutil.c32":  "syslinux-common",
		"/usr/lib/syslinux/modules/bios/libcom32.c32": "syslinux-common",
	}
	isohybridMBR = "/usr/lib/ISOLINUX/isohdpfx.bin" // in isolinux
	grubEFIDir   = "/usr/lib/grub/x86_64-efi"       // in grub-efi-amd64-bin
)

// grubModules are built into BOOTX64.EFI: enough to find the ISO on a CD
// or a USB stick and boot Linux from it, with a serial console.
const grubModules = "part_gpt part_msdos iso9660 fat search search_fs_file search_label linux normal configfile echo test all_video efi_gop gzio"

// ISO volume label.
const isoLabel = "DRIFT"

// isoLayout is where things go on the ISO.
const (
	isoKernel = "boot/vmlinuz"
	isoDir    = "boot"
	efiImage  = "boot/efi.img"
)

// isoTools are the host programs the ISO needs, with their packages.
var isoTools = [][2]string{
	{"xorriso", "xorriso"},
	{"grub-mkstandalone", "grub-common"},
	{"mkfs.vfat", "dosfstools"},
	{"mcopy", "mtools"},
	{"mmd", "mtools"},
}

// checkISOTools fails early, before anything is built, if a host tool or
// data file for the ISO is missing.
func checkISOTools() error {
	for _, t := range isoTools {
		if _, err := hostTool(t[0], t[1]); err != nil {
			return err
		}
	}
	for f, pkg := range isolinuxFiles {
		if _, err := hostFile(f, pkg); err != nil {
			return err
		}
	}
	if _, err := hostFile(isohybridMBR, "isolinux"); err != nil {
		return err
	}
	_, err := hostFile(filepath.Join(grubEFIDir, "linux.mod"), "grub-efi-amd64-bin")
	return err
}

// makeISO assembles the hybrid BIOS+UEFI, CD+USB image at iso from the
// kernel and initramfs, with menus rendered from m (Kernel and Initramfs
// are set here).
func (b *builder) makeISO(ctx context.Context, iso, kernel, initramfs, keyCPIO string, m boot.Menu) error {
	tree := filepath.Join(b.staging, "iso")
	for _, d := range []string{"isolinux", isoDir} {
		if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	m.Kernel = "/" + isoKernel
	m.Initramfs = "/" + isoDir + "/" + filepath.Base(initramfs)
	m.Key = "/" + isoDir + "/" + KeyCPIOName // the medium carries the key; the initramfs it serves does not
	for src, dst := range map[string]string{kernel: isoKernel, initramfs: strings.TrimPrefix(m.Initramfs, "/"), keyCPIO: strings.TrimPrefix(m.Key, "/")} {
		if err := placeFile(src, filepath.Join(tree, dst)); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	// The head serves network-booting machines the iPXE binaries from
	// its own boot medium: /pxe on the ISO, regular files (Debian ships
	// ipxe.efi as a symlink).
	if err := os.MkdirAll(filepath.Join(tree, "pxe"), 0o755); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	for _, src := range ipxeFiles {
		if err := placeFile(src, filepath.Join(tree, "pxe", filepath.Base(src))); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	if err := os.WriteFile(filepath.Join(tree, m.Marker), []byte(b.cfg.Version+"\n"), 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	if err := b.isolinux(tree, m); err != nil {
		return err
	}
	if err := b.efiImage(ctx, filepath.Join(tree, efiImage), m); err != nil {
		return err
	}
	_, err := run(ctx, "", "xorriso", "-as", "mkisofs",
		"-o", iso, "-V", isoLabel, "-J", "-joliet-long", "-R",
		"-isohybrid-mbr", isohybridMBR,
		"-c", "isolinux/boot.cat", "-b", "isolinux/isolinux.bin",
		"-no-emul-boot", "-boot-load-size", "4", "-boot-info-table",
		"-eltorito-alt-boot", "-e", efiImage, "-no-emul-boot", "-isohybrid-gpt-basdat",
		tree)
	if err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	return nil
}

// isolinux puts the BIOS boot loader and its menu into the ISO tree.
func (b *builder) isolinux(tree string, m boot.Menu) error {
	for src := range isolinuxFiles {
		if err := copyFile(src, filepath.Join(tree, "isolinux", filepath.Base(src))); err != nil {
			return fmt.Errorf("iso: %w", err)
		}
	}
	cfg, err := boot.Isolinux(m)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(tree, "isolinux", "isolinux.cfg"), cfg, 0o644); err != nil {
		return fmt.Errorf("iso: %w", err)
	}
	return nil
}

// efiImage builds GRUB as BOOTX64.EFI with the menu inside it and puts it
// in a FAT image, the EFI system partition of the ISO.
func (b *builder) efiImage(ctx context.Context, img string, m boot.Menu) error {
	cfg, err := boot.GRUB(m)
	if err != nil {
		return err
	}
	dir := filepath.Join(b.staging, "efi")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("efi image: %w", err)
	}
	cfgPath := filepath.Join(dir, "grub.cfg")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return fmt.Errorf("efi image: %w", err)
	}
	efi := filepath.Join(dir, "BOOTX64.EFI")
	if _, err := run(ctx, "", "grub-mkstandalone", "-O", "x86_64-efi", "-o", efi,
		"--modules="+grubModules, "--install-modules="+grubModules,
		"--locales=", "--fonts=", "--themes=",
		"boot/grub/grub.cfg="+cfgPath); err != nil {
		return fmt.Errorf("efi image: %w", err)
	}
	fi, err := os.Stat(efi)
	if err != nil {
		return fmt.Errorf("efi image: %w", err)
	}
	sizeKB := (fi.Size()/1024 + 1024 + 1023) / 1024 * 1024 // room for FAT, rounded to MiB
	steps := [][]string{
		{"mkfs.vfat", "-C", "-n", "DRIFT_EFI", img, fmt.Sprint(sizeKB)},
		{"mmd", "-i", img, "::/EFI", "::/EFI/BOOT"},
		{"mcopy", "-i", img, efi, "::/EFI/BOOT/BOOTX64.EFI"},
	}
	for _, s := range steps {
		if _, err := run(ctx, "", s[0], s[1:]...); err != nil {
			return fmt.Errorf("efi image: %w", err)
		}
	}
	return nil
}
