// Package imagebuild builds the drift image: it gets Debian's stock kernel
// and its modules, Debian's criu with its libraries, Debian's busybox as
// the nodes' shell, and the Debian packages asked for (with what they
// need, in one squashfs: see agent/packages), builds the initramfs
// (package initramfs), and writes the hybrid BIOS+UEFI ISO, the PXE tree,
// the cluster key and the manifest (image.json) that drift-lab and the
// QEMU tests read. cmd/drift-image is its command line.
package imagebuild

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/driftcluster/drift/imagebuild/debpkg"
)

// Cmdline is the base kernel command line of every boot entry: the console
// on the screen and on the first serial port.
const Cmdline = "console=tty0 console=ttyS0,115200"

// Output names in the output directory.
const (
	KernelName = "vmlinuz"
	ISOName    = "drift.iso"
	PXEDirName = "pxe"
	KeyName    = "cluster.key"
)

// Config says what to build and where. The zero value builds everything
// from Debian's packages into ./out.
type Config struct {
	Out        string       // output directory; "": "out"
	Cache      string       // download cache; "": $XDG_CACHE_HOME/drift-image (~/.cache/drift-image)
	Version    string       // drift version baked into the image; "": "dev"
	Kernel     string       // a bzImage to use instead of Debian's; "": Debian's linux-image-amd64
	Modules    string       // its /lib/modules/VERSION tree; "": the one from Debian's package
	KeyFile    string       // cluster key to bake in; "": Out/cluster.key if present, else a new key
	GoDir      string       // the drift Go module, where cmd/driftd and cmd/drift are; "": the current directory
	PXEBaseURL string       // where workers fetch the kernel by HTTP (iPXE syntax); "": "http://${next-server}"
	Packages   []string     // Debian packages every node gets, with what they need; nil: none
	Progress   io.Writer    // one line per step; nil: os.Stderr
	Logger     *slog.Logger // details; nil: slog.Default()
}

// steps is the number of progress steps Build prints.
const steps = 11

// builder carries one build.
type builder struct {
	cfg     Config
	log     *slog.Logger
	cache   string
	staging string // Out/.staging-*: everything is built here, then renamed into Out
	deb     *debian
	archive *debpkg.Index // apt's index of Debian's archive, read when packages are asked for
	start   time.Time
	step    int
}

// Build builds the image described by cfg into cfg.Out and returns its
// manifest. On failure nothing in cfg.Out changes.
func Build(ctx context.Context, cfg Config) (*Manifest, error) {
	b, err := newBuilder(cfg)
	if err != nil {
		return nil, err
	}
	// A misspelt package is refused before the output directory is touched.
	if err := b.checkPackages(ctx); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.cfg.Out, 0o755); err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	b.staging, err = os.MkdirTemp(b.cfg.Out, ".staging-")
	if err != nil {
		return nil, fmt.Errorf("output directory: %w", err)
	}
	defer os.RemoveAll(b.staging)
	m, err := b.build(ctx)
	if err != nil {
		return nil, err
	}
	return m, b.publish(m)
}

func newBuilder(cfg Config) (*builder, error) {
	cfg.Out = cmp.Or(cfg.Out, "out")
	cfg.Version = cmp.Or(cfg.Version, "dev")
	cfg.PXEBaseURL = cmp.Or(cfg.PXEBaseURL, "http://${next-server}")
	if cfg.Progress == nil {
		cfg.Progress = os.Stderr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	cache := cfg.Cache
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return nil, fmt.Errorf("cache directory: %w (give --cache)", err)
		}
		cache = filepath.Join(dir, "drift-image")
	}
	var err error
	if cfg.Out, err = filepath.Abs(cfg.Out); err != nil {
		return nil, err
	}
	return &builder{cfg: cfg, log: log, cache: cache, deb: &debian{cache: cache, log: log}, start: time.Now()}, nil
}

// progress prints the line for the next step.
func (b *builder) progress(format string, args ...any) {
	b.step++
	fmt.Fprintf(b.cfg.Progress, "[%d/%d] %s (%.1fs)\n", b.step, steps, fmt.Sprintf(format, args...), time.Since(b.start).Seconds())
}

// mib formats a size in MiB.
func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// fileSize returns the size of the file at p, 0 if it cannot be read.
func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}
