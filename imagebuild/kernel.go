package imagebuild

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/driftcluster/drift/imagebuild/kmod"
)

// debianKernelMeta is the Debian package that depends on the current stock
// amd64 kernel.
const debianKernelMeta = "linux-image-amd64"

// kernel is the kernel that goes into the image.
type kernel struct {
	Version string // e.g. 6.1.0-56-amd64
	Image   string // the bzImage on the host
	Modules string // its /lib/modules/VERSION tree on the host
	Config  string // its build config (/boot/config-VERSION), "" if unknown
	Source  string // where it came from, for progress lines
	Cached  bool   // the Debian package came from the cache
}

// ErrNotBzImage reports a --kernel file that is not an x86 Linux kernel.
var ErrNotBzImage = errors.New("not an x86 Linux kernel (bzImage): no HdrS magic at offset 0x202")

// bzImageVersion checks that the file at p is a bzImage and returns the
// kernel version its header names ("" if it names none).
func bzImageVersion(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", fmt.Errorf("kernel %s: %w", p, err)
	}
	defer f.Close()
	hdr := make([]byte, 0x210)
	if _, err := io.ReadFull(f, hdr); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return "", fmt.Errorf("kernel %s: %w", p, ErrNotBzImage)
	}
	// kernel_version (0x20e) points at a NUL-terminated string, 0x200
	// bytes before the offset it holds: "6.1.0-56-amd64 (debian-kernel@...) #1 ...".
	off := int64(hdr[0x20e]) | int64(hdr[0x20f])<<8
	if off == 0 {
		return "", nil
	}
	s := make([]byte, 256)
	n, _ := f.ReadAt(s, off+0x200)
	s = s[:n]
	if i := bytes.IndexByte(s, 0); i >= 0 {
		s = s[:i]
	}
	v, _, _ := strings.Cut(string(s), " ")
	return v, nil
}

// debianKernel fetches Debian's current stock amd64 kernel package.
func (b *builder) debianKernel(ctx context.Context) (kernel, error) {
	meta, err := b.deb.show(ctx, debianKernelMeta)
	if err != nil {
		return kernel{}, err
	}
	var pkg string
	for _, d := range meta.Depends {
		if strings.HasPrefix(d, "linux-image-") {
			pkg = d
		}
	}
	if pkg == "" {
		return kernel{}, fmt.Errorf("%s depends on no linux-image package", debianKernelMeta)
	}
	info, err := b.deb.show(ctx, pkg)
	if err != nil {
		return kernel{}, err
	}
	root, cached, err := b.deb.fetch(ctx, info)
	if err != nil {
		return kernel{}, err
	}
	version := strings.TrimPrefix(pkg, "linux-image-")
	k := kernel{
		Version: version,
		Image:   filepath.Join(root, "boot", "vmlinuz-"+version),
		Modules: filepath.Join(root, "lib", "modules", version),
		Config:  filepath.Join(root, "boot", "config-"+version),
		Source:  pkg,
		Cached:  cached,
	}
	// Debian's postinst runs depmod; do its job once in the cache.
	if _, err := os.Stat(filepath.Join(k.Modules, kmod.DepFile)); err != nil {
		if err := kmod.Depmod(k.Modules); err != nil {
			return kernel{}, err
		}
	}
	return k, nil
}

// hostKernel is the kernel given by --kernel and --modules. Either may be
// empty, and is then taken from Debian's package.
func (b *builder) hostKernel(ctx context.Context) (kernel, error) {
	k := kernel{Image: b.cfg.Kernel, Modules: b.cfg.Modules, Source: "--kernel " + b.cfg.Kernel}
	if k.Image == "" {
		k.Source = "--modules " + b.cfg.Modules
	}
	if k.Image != "" {
		v, err := bzImageVersion(k.Image)
		if err != nil {
			return kernel{}, err
		}
		k.Version = v
	}
	if k.Image == "" || k.Modules == "" {
		deb, err := b.debianKernel(ctx)
		if err != nil {
			return kernel{}, err
		}
		k.Image = cmp.Or(k.Image, deb.Image)
		k.Modules = cmp.Or(k.Modules, deb.Modules)
		k.Version = cmp.Or(k.Version, deb.Version)
		k.Config = deb.Config
	}
	if err := checkModules(k); err != nil {
		return kernel{}, err
	}
	if k.Config == "" {
		k.Config = findConfig(k.Modules, filepath.Base(k.Modules))
	}
	k.Version = filepath.Base(k.Modules)
	return k, nil
}

// checkModules checks that k.Modules is the module tree of k.Image.
func checkModules(k kernel) error {
	if _, err := os.Stat(filepath.Join(k.Modules, kmod.DepFile)); err != nil {
		return fmt.Errorf("modules %s: %w (give a /lib/modules/VERSION tree on which depmod has run)", k.Modules, err)
	}
	if v := filepath.Base(k.Modules); k.Version != "" && v != k.Version {
		return fmt.Errorf("kernel %s is version %s but modules %s are for %s: give --modules for this kernel", k.Image, k.Version, k.Modules, v)
	}
	return nil
}

// findConfig looks for the build config of kernel version beside a module
// tree: /boot/config-VERSION for /lib/modules/VERSION, or the build tree's
// .config. It returns "" if there is none.
func findConfig(modules, version string) string {
	for _, p := range []string{
		filepath.Join(modules, "..", "..", "..", "boot", "config-"+version),
		filepath.Join(modules, "build", ".config"),
	} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// supportsZstd reports whether the kernel config says CONFIG_RD_ZSTD=y.
func supportsZstd(config string) bool {
	b, err := os.ReadFile(config)
	return err == nil && bytes.Contains(b, []byte("\nCONFIG_RD_ZSTD=y\n"))
}
