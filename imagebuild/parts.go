package imagebuild

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// The parts of an initramfs that make image reports the size of.
const (
	PartGo       = "Go binaries (driftd, drift, drift-workload, drift-init, drift-job)"
	PartUroot    = "u-root tools (init, gosh and the console's commands)"
	PartCRIU     = "criu and its libraries"
	PartModules  = "kernel modules"
	PartShell    = "Debian busybox (/bin/sh and applets)"
	PartPackages = "Debian packages (squashfs)"
	PartLate     = "unpacked after the network is up (zstd tar)"
	PartOther    = "other (directories, links, key, config)"
)

// partOrder is the order parts are printed in.
var partOrder = []string{PartGo, PartUroot, PartCRIU, PartModules, PartShell, PartPackages, PartLate, PartOther}

// Part is what one part of the initramfs costs.
type Part struct {
	Name       string
	Files      int
	Bytes      int64 // unpacked, as it lies in the node's RAM
	Compressed int64 // compressed alone with zstd: about what it adds to the compressed initramfs
}

// PartSizes reads the compressed initramfs at path (zstd or gzip) and
// sums its files by part, as classify names the part of each path in the
// archive (relative, e.g. "bin/driftd"); classify returns "" for
// PartOther. The parts come in partOrder, then any others by name.
func PartSizes(path string, classify func(name string) string) ([]Part, error) {
	raw, err := readInitramfs(path)
	if err != nil {
		return nil, err
	}
	parts := map[string]*Part{}
	content := map[string]*bytes.Buffer{}
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	for {
		rec, err := rr.ReadRecord()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("part sizes of %s: %w", path, err)
		}
		name := strings.TrimPrefix(rec.Name, "./")
		part := classify(name)
		if part == "" {
			part = PartOther
		}
		p := parts[part]
		if p == nil {
			p = &Part{Name: part}
			parts[part], content[part] = p, &bytes.Buffer{}
		}
		p.Files++
		p.Bytes += int64(rec.FileSize)
		if rec.ReaderAt != nil && rec.FileSize > 0 {
			if _, err := io.Copy(content[part], io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize))); err != nil {
				return nil, fmt.Errorf("part sizes of %s: read %s: %w", path, name, err)
			}
		}
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return nil, fmt.Errorf("part sizes: %w", err)
	}
	defer enc.Close()
	var out []Part
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range parts {
			if !yield(k) {
				return
			}
		}
	})
	slices.SortStableFunc(names, func(a, b string) int {
		ia, ib := slices.Index(partOrder, a), slices.Index(partOrder, b)
		if ia < 0 {
			ia = len(partOrder)
		}
		if ib < 0 {
			ib = len(partOrder)
		}
		return ia - ib
	})
	for _, n := range names {
		p := parts[n]
		p.Compressed = int64(len(enc.EncodeAll(content[n].Bytes(), nil)))
		out = append(out, *p)
	}
	return out, nil
}

// readInitramfs returns the uncompressed archive at path.
func readInitramfs(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("part sizes: %w", err)
	}
	defer f.Close()
	var r io.Reader
	switch {
	case strings.HasSuffix(path, ".zst"):
		d, err := zstd.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("part sizes of %s: %w", path, err)
		}
		defer d.Close()
		r = d
	case strings.HasSuffix(path, ".gz"):
		g, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("part sizes of %s: %w", path, err)
		}
		r = g
	default:
		r = f
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("part sizes of %s: %w", path, err)
	}
	return b, nil
}

// partClassifier names the part of each archive path: dsts maps the
// archive paths that drift-image put there itself to their part; the
// rest is u-root's (bbin/) or other.
func partClassifier(dsts map[string]string) func(string) string {
	return func(name string) string {
		if p, ok := dsts[name]; ok {
			return p
		}
		switch {
		case strings.HasPrefix(name, "lib/modules/"):
			return PartModules
		case strings.HasPrefix(name, "bbin/"), name == "inito":
			return PartUroot
		}
		return ""
	}
}

// printParts writes the parts' sizes, one line each, and their total.
func printParts(w io.Writer, parts []Part) {
	var raw, comp int64
	for _, p := range parts {
		fmt.Fprintf(w, "  %-52s %4d files %8s  %8s zstd\n", p.Name, p.Files, mib(p.Bytes), mib(p.Compressed))
		raw += p.Bytes
		comp += p.Compressed
	}
	fmt.Fprintf(w, "  %-52s %4s       %8s  %8s zstd (each part alone)\n", "total", "", mib(raw), mib(comp))
}
