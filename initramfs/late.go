package initramfs

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"path"

	"github.com/klauspost/compress/zstd"
)

// WriteLate writes the archive of the files a node needs only after it is
// ready, which the agent unpacks into / once its network drivers are
// loaded (boot.UnpackLate; it lies at boot.LatePath in the initramfs).
// The kernel unpacks it, compressed, with the rest at boot: as the outer
// archive cannot shrink what is compressed already, that costs the
// kernel a copy, not the decompression of everything inside. WriteLate
// writes files (regular files and symlinks; Dst relative, as in
// the initramfs) as a zstd-compressed tar at out. Owners are root and
// times zero, so the output depends only on the files.
func WriteLate(out string, files []File) error {
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("late archive: %w", err)
	}
	defer f.Close()
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		return fmt.Errorf("late archive: %w", err)
	}
	tw := tar.NewWriter(zw)
	for _, file := range files {
		if err := addLate(tw, file); err != nil {
			return fmt.Errorf("late archive: %s: %w", file.Dst, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("late archive: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("late archive: %w", err)
	}
	return f.Close()
}

func addLate(tw *tar.Writer, file File) error {
	fi, err := os.Lstat(file.Src)
	if err != nil {
		return err
	}
	hdr := &tar.Header{Name: path.Clean(file.Dst), Mode: int64(fi.Mode().Perm()), Format: tar.FormatPAX}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		target, err := os.Readlink(file.Src)
		if err != nil {
			return err
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
		return tw.WriteHeader(hdr)
	case fi.Mode().IsRegular():
		hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		in, err := os.Open(file.Src)
		if err != nil {
			return err
		}
		defer in.Close()
		_, err = io.Copy(tw, in)
		return err
	}
	return fmt.Errorf("%s is neither a regular file nor a symlink", file.Src)
}
