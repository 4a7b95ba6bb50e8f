package initramfs

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/klauspost/compress/zstd"
)

// Compress is how the archive is compressed.
type Compress int

const (
	Gzip Compress = iota // every kernel unpacks it (CONFIG_RD_GZIP)
	Zstd                 // smaller and faster to unpack; needs CONFIG_RD_ZSTD
)

// Ext returns the file name suffix of the compression, e.g. ".zst".
func (c Compress) Ext() string {
	if c == Zstd {
		return ".zst"
	}
	return ".gz"
}

// compressFile compresses src into dst.
func compressFile(src, dst string, c Compress) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("compress initramfs: %w", err)
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("compress initramfs: %w", err)
	}
	defer out.Close()
	w, err := compressor(out, c)
	if err != nil {
		return fmt.Errorf("compress initramfs: %w", err)
	}
	if _, err := io.Copy(w, in); err != nil {
		return fmt.Errorf("compress initramfs %s: %w", filepath.Base(dst), err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("compress initramfs %s: %w", filepath.Base(dst), err)
	}
	return out.Close()
}

// compressor wraps w. The kernel's zstd decoder wants a single frame with a
// bounded window, which the encoder's default window (8 MiB) satisfies.
func compressor(w io.Writer, c Compress) (io.WriteCloser, error) {
	if c == Zstd {
		return zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	}
	return gzip.NewWriterLevel(w, gzip.BestCompression)
}
