package imagebuild

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// ManifestName is the file in the output directory that describes a built image.
const ManifestName = "image.json"

// Manifest describes a built drift image. drift-image writes it as
// out/image.json; drift-lab and the QEMU tests read it to know what to boot.
// File names are relative to the directory holding the manifest.
type Manifest struct {
	Version       string   `json:"version"`            // drift version baked into the image
	KernelVersion string   `json:"kernel_version"`     // e.g. 6.1.0-56-amd64
	ClusterID     string   `json:"cluster_id"`         // hash of the cluster key, never the key
	KeyFile       string   `json:"key_file"`           // where the cluster key is kept (absolute path)
	Kernel        string   `json:"kernel"`             // "vmlinuz"
	Initramfs     string   `json:"initramfs"`          // "initramfs.cpio.zst" or "initramfs.cpio.gz"
	KeyInitramfs  string   `json:"key_initramfs"`      // "key.cpio": the cluster key alone, loaded before Initramfs by the ISO (and drift-lab); never served
	ISO           string   `json:"iso"`                // "drift.iso"
	PXEDir        string   `json:"pxe_dir"`            // "pxe"
	Cmdline       string   `json:"cmdline"`            // base kernel command line (consoles), without drift.* options
	Packages      []string `json:"packages,omitempty"` // Debian packages asked for (drift-image --packages); their closure is in the initramfs
}

// ReadManifest reads dir/image.json.
func ReadManifest(dir string) (*Manifest, error) {
	p := filepath.Join(dir, ManifestName)
	b, err := os.ReadFile(p)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("read image manifest: %s does not exist; build the image first with `make image`", p)
		}
		return nil, fmt.Errorf("read image manifest: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("read image manifest %s: %w (rebuild with `make image`)", p, err)
	}
	return &m, nil
}

// Path returns the absolute path of a manifest file name relative to dir.
func (m *Manifest) Path(dir, name string) string { return filepath.Join(dir, name) }
