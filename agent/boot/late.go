package boot

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// LatePath is where, in the initramfs (relative), the archive of the
// files a node needs only after it is ready lies (initramfs.WriteLate).
const LatePath = "lib/drift/late.tar.zst"

// UnpackLate unpacks the zstd-compressed tar at archive (the image's
// files that a node needs only after it is ready: CRIU, and the modules
// that are not the network's) into root, then removes archive, whose
// bytes lie in RAM. It returns how many files it wrote. A missing archive
// is no error (an image that carries everything unpacked): n is 0.
func UnpackLate(archive, root string) (n int, err error) {
	f, err := os.Open(archive)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("unpack %s: %w", archive, err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return 0, fmt.Errorf("unpack %s: %w", archive, err)
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, fmt.Errorf("unpack %s: %w", archive, err)
		}
		if err := writeLate(root, hdr, tr); err != nil {
			return n, fmt.Errorf("unpack %s: %s: %w", archive, hdr.Name, err)
		}
		n++
	}
	f.Close()
	if err := os.Remove(archive); err != nil {
		return n, fmt.Errorf("unpack %s: %w", archive, err)
	}
	return n, nil
}

// writeLate writes one member of the late archive under root.
func writeLate(root string, hdr *tar.Header, r io.Reader) error {
	if !filepath.IsLocal(hdr.Name) {
		return errors.New("not a path inside the root")
	}
	dst := filepath.Join(root, hdr.Name)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeSymlink:
		os.Remove(dst)
		return os.Symlink(hdr.Linkname, dst)
	case tar.TypeReg:
		// Written under a temporary name and renamed: no program ever
		// finds a file half written.
		tmp := dst + ".late"
		out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, os.FileMode(hdr.Mode).Perm())
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, r); err != nil {
			out.Close()
			os.Remove(tmp)
			return err
		}
		if err := out.Close(); err != nil {
			os.Remove(tmp)
			return err
		}
		return os.Rename(tmp, dst)
	case tar.TypeDir:
		return os.MkdirAll(dst, os.FileMode(hdr.Mode).Perm())
	}
	return fmt.Errorf("type %q not unpacked", hdr.Typeflag)
}
