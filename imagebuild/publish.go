package imagebuild

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// publish moves what the build staged into the output directory, replacing
// the previous image, and writes the manifest last.
func (b *builder) publish(m *Manifest) error {
	names := []string{KernelName, m.Initramfs, KeyCPIOName, ISOName, PXEDirName, KeyName}
	for _, name := range names {
		src := filepath.Join(b.staging, name)
		if _, err := os.Lstat(src); os.IsNotExist(err) {
			continue // the key, when the output directory already has it
		}
		dst := filepath.Join(b.cfg.Out, name)
		if err := os.RemoveAll(dst); err != nil {
			return fmt.Errorf("publish %s: %w", name, err)
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("publish %s: %w", name, err)
		}
	}
	// An image built before with the other compression leaves its initramfs.
	for _, old := range []string{"initramfs.cpio.gz", "initramfs.cpio.zst"} {
		if old != m.Initramfs {
			os.Remove(filepath.Join(b.cfg.Out, old))
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	tmp := filepath.Join(b.staging, ManifestName)
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(b.cfg.Out, ManifestName)); err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	return nil
}
