// Command drift-image builds the drift image (kernel, initramfs, hybrid
// BIOS+UEFI ISO, PXE tree, cluster key and image.json) into one directory:
//
//	go run ./cmd/drift-image --out out [--key-file F] [--version V] [--packages "python3 povray"]
//
// The work is done by package imagebuild.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/driftcluster/drift/imagebuild"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "drift-image: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	var cfg imagebuild.Config
	fs := flag.NewFlagSet("drift-image", flag.ContinueOnError)
	fs.StringVar(&cfg.Out, "out", "out", "output `directory`")
	fs.StringVar(&cfg.Cache, "cache", "", "download cache `directory` (default $XDG_CACHE_HOME/drift-image)")
	fs.StringVar(&cfg.Version, "version", "", "drift `version` baked into the image (default: git describe --always --dirty, else dev)")
	fs.StringVar(&cfg.Kernel, "kernel", "", "use this bzImage instead of Debian's stock kernel")
	fs.StringVar(&cfg.Modules, "modules", "", "the kernel's /lib/modules/VERSION `directory` (default: from Debian's package)")
	fs.StringVar(&cfg.KeyFile, "key-file", "", "cluster key `file` to bake in (default: reuse OUT/cluster.key, else generate one)")
	fs.StringVar(&cfg.PXEBaseURL, "pxe-url", "", "base `URL` from which iPXE fetches the kernel (default http://${next-server})")
	pkgs := fs.String("packages", "", "Debian `packages` every node gets, with what they need, separated by spaces or commas (e.g. \"python3 povray\")")
	verbose := fs.Bool("v", false, "log details")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q (see -h)", fs.Args())
	}
	cfg.Packages = strings.FieldsFunc(*pkgs, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if cfg.Version == "" {
		cfg.Version = gitVersion()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	m, err := imagebuild.Build(ctx, cfg)
	if err != nil {
		return err
	}
	out := cfg.Out
	fmt.Printf("drift image %s (kernel %s) in %s/ after %.1fs\n", m.Version, m.KernelVersion, out, time.Since(start).Seconds())
	fmt.Printf("  iso:        %s (%s)\n", filepath.Join(out, m.ISO), size(filepath.Join(out, m.ISO)))
	fmt.Printf("  kernel:     %s (%s)\n", filepath.Join(out, m.Kernel), size(filepath.Join(out, m.Kernel)))
	fmt.Printf("  initramfs:  %s (%s)\n", filepath.Join(out, m.Initramfs), size(filepath.Join(out, m.Initramfs)))
	fmt.Printf("  pxe:        %s/\n", filepath.Join(out, m.PXEDir))
	if len(m.Packages) > 0 {
		fmt.Printf("  packages:   %s, with what they need\n", strings.Join(m.Packages, " "))
	}
	fmt.Printf("  cluster id: %s, key in %s (keep it secret)\n", m.ClusterID, m.KeyFile)
	return nil
}

// gitVersion describes the working tree, or says "dev" outside git.
func gitVersion() string {
	b, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if v := strings.TrimSpace(string(b)); err == nil && v != "" {
		return v
	}
	return "dev"
}

func size(p string) string {
	fi, err := os.Stat(p)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MiB", float64(fi.Size())/(1<<20))
}
