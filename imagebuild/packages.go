package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/driftcluster/drift/agent/packages"
	"github.com/driftcluster/drift/imagebuild/debpkg"
	"github.com/driftcluster/drift/initramfs"
)

// standIns are the Essential packages the image stands in for. Debian
// promises every system its Essential packages, so packages need not
// declare that they use them, and those that declare it mostly do for
// their maintainer scripts. A dependency on one of these is satisfied
// without fetching it, as long as the archive marks it Essential; any
// other dependency, on an Essential package or not, is followed (perl
// needs perl-base, which holds /usr/bin/perl).
var standIns = map[string]string{
	"coreutils":           "busybox's applets",
	"dash":                "/bin/sh is busybox ash",
	"sed":                 "busybox's sed",
	"grep":                "busybox's grep",
	"findutils":           "busybox's find and xargs",
	"diffutils":           "busybox's diff and cmp",
	"gzip":                "busybox's gzip",
	"tar":                 "busybox's tar",
	"hostname":            "busybox's hostname",
	"debianutils":         "busybox's which and run-parts; the rest serve maintainer scripts",
	"sysvinit-utils":      "busybox's pidof; the rest serve init scripts",
	"bsdutils":            "busybox's logger and renice",
	"dpkg":                "maintainer scripts are not run and nothing is installed on a node",
	"init-system-helpers": "maintainer scripts are not run",
	"base-files":          "the image has its own /etc",
	"base-passwd":         "the image has its own /etc",
}

// squashfsOptions are how drift-image runs mksquashfs: zstd at its
// highest level (smaller than gzip and lzo, and the kernel decompresses it
// faster than xz), files owned by root whoever builds, and no extended
// attributes (nothing on a node reads them).
var squashfsOptions = []string{"-noappend", "-all-root", "-no-xattrs", "-comp", "zstd", "-Xcompression-level", "19", "-quiet", "-no-progress"}

// packageSet is the Debian packages an image carries.
type packageSet struct {
	Names        []string // as asked for
	Packages     []string // fetched: the names and what they need, "name version"
	Completed    []string // packages of the image's own (criu's libraries) whose other files were added
	Cached       int      // how many of Packages came from the cache
	Unpacked     int64    // bytes of the files in the squashfs
	LeftOut      int64    // bytes of documentation left out
	Squashfs     string   // the squashfs file
	Alternatives int      // update-alternatives links made
	Unmade       int      // update-alternatives calls with shell variables, not made
}

// checkPackages refuses, before anything is written, package names that
// Debian's archive (as the host's apt knows it) does not have, and a host
// without mksquashfs.
func (b *builder) checkPackages(ctx context.Context) error {
	if len(b.cfg.Packages) == 0 {
		return nil
	}
	if _, err := hostTool("mksquashfs", "squashfs-tools"); err != nil {
		return err
	}
	idx, err := b.deb.archive(ctx)
	if err != nil {
		return err
	}
	var unknown []string
	for _, n := range b.cfg.Packages {
		if !idx.Has(n) {
			unknown = append(unknown, fmt.Sprintf("%q", n))
		}
	}
	switch len(unknown) {
	case 0:
	case 1:
		return fmt.Errorf("package %s is not in Debian's archive (apt-cache knows no such package): check the name", unknown[0])
	default:
		return fmt.Errorf("packages %s are not in Debian's archive (apt-cache knows no such packages): check the names", strings.Join(unknown, ", "))
	}
	b.archive = idx
	return nil
}

// packages fetches the packages asked for with everything they need that
// the image lacks, and builds them into one squashfs, returned with what
// went in. The image's own packages (criu's libraries, busybox) satisfy
// dependencies and are not fetched again; those the packages rely on get
// the rest of their files from the cache (criu carries only the libraries
// it loads: python3 needs libm from libc6 too).
func (b *builder) packages(ctx context.Context, criu criuRoot, sh shell) (*packageSet, error) {
	if len(b.cfg.Packages) == 0 {
		b.progress("packages: none (make image PACKAGES=\"python3 ...\" adds Debian packages)")
		return nil, nil
	}
	if b.archive == nil {
		if err := b.checkPackages(ctx); err != nil {
			return nil, err
		}
	}
	own := map[string]pkgInfo{busyboxPackage: {Name: busyboxPackage, Version: sh.Version}}
	for _, p := range criu.Packages {
		own[p.Name] = p
	}
	base := slices.Collect(maps.Keys(own))
	for n := range standIns {
		if r, ok := b.archive.Record(n); ok && r.Essential {
			base = append(base, n)
		}
	}
	slices.Sort(base)
	closure, err := debpkg.Resolve(b.archive, b.cfg.Packages, base)
	if err != nil {
		return nil, fmt.Errorf("packages: %w (apt's lists may be out of date: run apt-get update)", err)
	}
	set := &packageSet{Names: b.cfg.Packages, Squashfs: filepath.Join(b.staging, "packages.squashfs")}
	infos := make([]pkgInfo, len(closure.Fetch))
	for i, r := range closure.Fetch {
		infos[i] = pkgInfo{Name: r.Package, Version: r.Version}
		set.Packages = append(set.Packages, r.Package+" "+r.Version)
	}
	dirs, cached, err := b.deb.fetchAll(ctx, infos)
	if err != nil {
		return nil, err
	}
	set.Cached = cached

	tree := filepath.Join(b.staging, "packages")
	for i, dir := range dirs {
		if err := set.add(dir, tree, nil); err != nil {
			return nil, fmt.Errorf("packages: add %s: %w", infos[i].Name, err)
		}
	}
	inImage := map[string]bool{}
	for _, f := range append(slices.Clone(criu.Files), sh.Libs...) {
		inImage[f] = true
	}
	for _, n := range closure.Base {
		p, ok := own[n]
		if !ok || n == busyboxPackage {
			continue // a stand-in: nothing to add
		}
		if !b.deb.cached(p) {
			return nil, fmt.Errorf("packages: %s of the image is not in the cache %s (remove the cache's sysroot directory and build again)", n, b.deb.unpackedDir(p))
		}
		if err := set.add(b.deb.unpackedDir(p), tree, inImage); err != nil {
			return nil, fmt.Errorf("packages: add the rest of %s: %w", n, err)
		}
		set.Completed = append(set.Completed, n)
	}

	var alts []debpkg.Alternative
	for _, info := range infos {
		ctl, err := b.deb.control(ctx, info)
		if err != nil {
			return nil, err
		}
		script, err := os.ReadFile(filepath.Join(ctl, "postinst"))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("packages: %w", err)
		}
		got, skipped := debpkg.ParseAlternatives(script)
		if skipped > 0 {
			b.log.Warn("packages: update-alternatives calls with shell variables not made; the links they make are missing", "package", info.Name, "calls", skipped)
		}
		set.Unmade += skipped
		for _, a := range got {
			a.Package = info.Name
			alts = append(alts, a)
		}
	}
	if set.Alternatives, err = makeAlternatives(tree, debpkg.Choose(alts), b.log.Debug); err != nil {
		return nil, fmt.Errorf("packages: %w", err)
	}
	if err := makeSquashfs(ctx, tree, set.Squashfs); err != nil {
		return nil, fmt.Errorf("packages: %w", err)
	}
	var extra string
	if len(set.Completed) > 0 {
		extra = fmt.Sprintf(", with the rest of %s from the image", strings.Join(set.Completed, ", "))
	}
	if set.Unmade > 0 {
		extra += fmt.Sprintf(", %d update-alternatives calls with shell variables not made (drift-image -v names them)", set.Unmade)
	}
	b.progress("packages: %s → %d packages (%d cached), %s unpacked, %s squashfs; %d alternatives, %s of documentation left out%s",
		strings.Join(set.Names, " "), len(set.Packages), set.Cached, mib(set.Unpacked), mib(fileSize(set.Squashfs)), set.Alternatives, mib(set.LeftOut), extra)
	return set, nil
}

// makeSquashfs writes the squashfs out from tree, without its empty
// directories (each top-level directory becomes an overlay on a node).
func makeSquashfs(ctx context.Context, tree, out string) error {
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return err
	}
	var dirs []string
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && p != tree {
			dirs = append(dirs, p)
		}
		return nil
	})
	for _, d := range slices.Backward(dirs) {
		os.Remove(d) // fails, as it should, unless empty
	}
	_, err := run(ctx, "", "mksquashfs", append([]string{tree, out}, squashfsOptions...)...)
	return err
}

// file returns the squashfs as the initramfs carries it.
func (set *packageSet) file() initramfs.File {
	return initramfs.File{Src: set.Squashfs, Dst: strings.TrimPrefix(packages.ImagePath, "/")}
}

// add links the files of one unpacked package (src) into tree, except
// those in skip (paths relative to the package root) and the
// documentation leftOut names, and counts their bytes.
func (set *packageSet) add(src, tree string, skip map[string]bool) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() && strings.HasPrefix(rel+"/", docDir) {
			return nil // made when a copyright file goes in
		}
		if leftOut(rel) {
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					set.LeftOut += fi.Size()
				}
			}
			return nil
		}
		if skip[rel] {
			return nil
		}
		dst := filepath.Join(tree, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			os.Remove(dst)
			return os.Symlink(link, dst)
		case d.Type().IsRegular():
			fi, err := d.Info()
			if err != nil {
				return err
			}
			set.Unpacked += fi.Size()
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				return err
			}
			return placeFile(p, dst)
		}
		return nil // no devices or fifos in packages
	})
}

const docDir = "usr/share/doc/"

// leftOut reports whether the squashfs leaves out a package's path
// (relative to its root): documentation, which no program on a node reads
// (the image has no man, info or doc reader), keeping each package's
// copyright file. Debian's own slim images leave out the same.
func leftOut(rel string) bool {
	for _, d := range []string{"usr/share/man", "usr/share/info", "usr/share/lintian"} {
		if rel == d || strings.HasPrefix(rel, d+"/") {
			return true
		}
	}
	return strings.HasPrefix(rel, docDir) && path.Base(rel) != "copyright"
}

// makeAlternatives makes in tree the links update-alternatives would have
// made for the chosen alternatives: /etc/alternatives/NAME -> PATH and
// LINK -> /etc/alternatives/NAME, and the same for each slave. An
// alternative whose PATH is not in the tree is not made, nor a slave
// whose PATH is not (a man page left out). It returns how many links
// (masters and slaves) it made.
func makeAlternatives(tree string, alts []debpkg.Alternative, logf func(msg string, args ...any)) (int, error) {
	made := 0
	link := func(name, target, generic string) (bool, error) {
		if _, err := os.Lstat(inTree(tree, target)); err != nil {
			logf("packages: alternative not made: its path is not in the image", "name", name, "path", target)
			return false, nil
		}
		for l, t := range map[string]string{
			"/etc/alternatives/" + name: target,
			generic:                     "/etc/alternatives/" + name,
		} {
			p := inTree(tree, l)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return false, err
			}
			os.Remove(p)
			if err := os.Symlink(t, p); err != nil {
				return false, fmt.Errorf("alternative %s: %w", name, err)
			}
		}
		return true, nil
	}
	for _, a := range alts {
		if strings.Contains(a.Name, "/") {
			continue
		}
		ok, err := link(a.Name, a.Path, a.Link)
		if err != nil {
			return made, err
		}
		if !ok {
			continue
		}
		made++
		for _, s := range a.Slaves {
			if strings.Contains(s.Name, "/") {
				continue
			}
			ok, err := link(s.Name, s.Path, s.Link)
			if err != nil {
				return made, err
			}
			if ok {
				made++
			}
		}
	}
	return made, nil
}

// inTree returns where the absolute image path p is in tree, never
// outside it.
func inTree(tree, p string) string {
	return filepath.Join(tree, filepath.Clean("/"+p))
}
