package imagebuild

import (
	"bytes"
	"fmt"
	"os"

	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/u-root/u-root/pkg/cpio"
)

// KeyCPIOName is the small uncompressed cpio archive that holds only the
// cluster key (etc/drift/cluster.key). The ISO's boot menus load it before
// the initramfs, so a machine booted from the medium has the key; the
// initramfs itself carries no key, so what the head serves over the
// network (the same initramfs) gives nobody the key.
const KeyCPIOName = "key.cpio"

// keyCPIOPath is where KeyCPIOName unpacks the key: the agent's KeyFile.
const keyCPIOPath = "etc/drift/cluster.key"

// KeyCPIO returns a newc cpio archive that holds k's key file as
// etc/drift/cluster.key (mode 0600), with its directories.
func KeyCPIO(k clusterkey.Cluster) ([]byte, error) {
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.Directory("etc/drift", 0o755),
		cpio.StaticFile(keyCPIOPath, k.Text(), 0o600),
	}
	if err := cpio.WriteRecords(w, recs); err != nil {
		return nil, fmt.Errorf("key cpio: %w", err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		return nil, fmt.Errorf("key cpio: %w", err)
	}
	return buf.Bytes(), nil
}

// writeKeyCPIO writes KeyCPIO(k) to path with mode 0600.
func writeKeyCPIO(path string, k clusterkey.Cluster) error {
	b, err := KeyCPIO(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("key cpio: %w", err)
	}
	return nil
}
