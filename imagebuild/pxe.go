package imagebuild

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/driftcluster/drift/configs/boot"
)

// iPXE binaries from Debian's ipxe package: undionly.kpxe chains from a
// legacy BIOS PXE ROM, snponly.efi from UEFI network boot (it drives the
// card through the firmware's own network driver, which the firmware's
// PXE boot has just used: a fifth of ipxe.efi, so fewer TFTP blocks in
// lockstep). ipxe.efi, with iPXE's own drivers, is served too, for a
// firmware whose network driver iPXE cannot use.
var ipxeFiles = []string{"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/snponly.efi", "/usr/lib/ipxe/ipxe.efi"}

// checkPXEFiles fails early if the iPXE binaries are missing.
func checkPXEFiles() error {
	for _, f := range ipxeFiles {
		if _, err := hostFile(f, "ipxe"); err != nil {
			return err
		}
	}
	return nil
}

// makePXE fills dir with what the head serves to network-booting workers:
// the kernel, the initramfs, the iPXE script and the iPXE binaries.
func (b *builder) makePXE(dir, kernel, initramfs string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pxe: %w", err)
	}
	script, err := boot.IPXEScript(boot.IPXE{
		BaseURL:   b.cfg.PXEBaseURL,
		Kernel:    filepath.Base(kernel),
		Initramfs: filepath.Base(initramfs),
		Cmdline:   Cmdline + " drift.role=worker",
	})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "boot.ipxe"), script, 0o644); err != nil {
		return fmt.Errorf("pxe: %w", err)
	}
	for _, src := range append([]string{kernel, initramfs}, ipxeFiles...) {
		if err := placeFile(src, filepath.Join(dir, filepath.Base(src))); err != nil {
			return fmt.Errorf("pxe: %w", err)
		}
	}
	return nil
}
