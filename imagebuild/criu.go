package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/driftcluster/drift/imagebuild/elfdeps"
)

// criuBinary is where Debian's criu package puts the program.
const criuBinary = "usr/sbin/criu"

// criuRoot is criu with the libraries it loads, gathered from Debian
// packages into a sysroot.
type criuRoot struct {
	Sysroot  string    // the sysroot directory
	Files    []string  // paths relative to Sysroot: criu, its libraries, ld.so
	Version  string    // of the criu package
	Packages []pkgInfo // the packages in the sysroot: criu and its libraries
	Cached   int       // how many of the packages came from the cache
	Fetched  int       // how many were downloaded
}

// criu fetches Debian's criu and, following Depends, the library packages
// it needs, until every DT_NEEDED of criu and its libraries resolves in a
// sysroot merged from them (hard links into the cache). The sysroot is kept
// with a record of the packages in it, and reused while apt's candidate
// versions of them stay the same.
func (b *builder) criu(ctx context.Context) (criuRoot, error) {
	info, err := b.deb.show(ctx, "criu")
	if err != nil {
		return criuRoot{}, err
	}
	r := criuRoot{Sysroot: filepath.Join(b.cache, "sysroot", "criu_"+info.Version), Version: info.Version}
	if b.reuseSysroot(ctx, &r) {
		return r, nil
	}
	if err := os.RemoveAll(r.Sysroot); err != nil {
		return criuRoot{}, fmt.Errorf("criu sysroot: %w", err)
	}
	var all []pkgInfo
	have := map[string]bool{info.Name: true}
	level := []pkgInfo{info}
	for {
		if err := b.addToSysroot(ctx, &r, level); err != nil {
			return criuRoot{}, err
		}
		all = append(all, level...)
		files, err := elfdeps.Closure(r.Sysroot, criuBinary)
		var missing *elfdeps.MissingError
		if !errors.As(err, &missing) {
			r.Files, r.Packages = files, all
			if err != nil {
				return r, err
			}
			return r, writeSysrootRecord(r.Sysroot, all)
		}
		names := libraryDeps(level, have)
		if len(names) == 0 {
			return criuRoot{}, fmt.Errorf("criu: %w, and no library package that criu depends on provides them", missing)
		}
		if level, err = b.deb.showAll(ctx, names...); err != nil {
			return criuRoot{}, err
		}
	}
}

// addToSysroot fetches pkgs and links their files into r's sysroot.
func (b *builder) addToSysroot(ctx context.Context, r *criuRoot, pkgs []pkgInfo) error {
	dirs, cached, err := b.deb.fetchAll(ctx, pkgs)
	if err != nil {
		return err
	}
	r.Cached += cached
	r.Fetched += len(pkgs) - cached
	for i, dir := range dirs {
		if err := linkTree(dir, r.Sysroot); err != nil {
			return fmt.Errorf("criu sysroot: add %s: %w", pkgs[i].Name, err)
		}
	}
	return nil
}

// libraryDeps returns the library packages (Debian names them lib*) that
// pkgs depend on and that are not in have yet, and adds them to have.
func libraryDeps(pkgs []pkgInfo, have map[string]bool) []string {
	var out []string
	for _, p := range pkgs {
		for _, d := range p.Depends {
			if !have[d] && strings.HasPrefix(d, "lib") {
				have[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// sysrootRecord is the file beside a sysroot that lists its packages.
func sysrootRecord(sysroot string) string { return sysroot + ".pkgs" }

// writeSysrootRecord marks the sysroot complete, listing "name version"
// of each package in it.
func writeSysrootRecord(sysroot string, pkgs []pkgInfo) error {
	var b strings.Builder
	for _, p := range pkgs {
		fmt.Fprintf(&b, "%s %s\n", p.Name, p.Version)
	}
	if err := os.WriteFile(sysrootRecord(sysroot), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("criu sysroot: %w", err)
	}
	return nil
}

// reuseSysroot fills r from a complete sysroot whose packages are still
// apt's candidates, and reports whether it could.
func (b *builder) reuseSysroot(ctx context.Context, r *criuRoot) bool {
	rec, err := os.ReadFile(sysrootRecord(r.Sysroot))
	if err != nil {
		return false
	}
	var names, versions []string
	var pkgs []pkgInfo
	for _, line := range strings.Split(strings.TrimSpace(string(rec)), "\n") {
		name, version, _ := strings.Cut(line, " ")
		names, versions = append(names, name), append(versions, version)
		pkgs = append(pkgs, pkgInfo{Name: name, Version: version})
	}
	infos, err := b.deb.showAll(ctx, names...)
	if err != nil {
		return false
	}
	for i, info := range infos {
		if info.Version != versions[i] {
			b.log.Info("criu sysroot out of date", "package", info.Name, "was", versions[i], "now", info.Version)
			return false
		}
	}
	files, err := elfdeps.Closure(r.Sysroot, criuBinary)
	if err != nil {
		return false
	}
	r.Files, r.Packages, r.Cached = files, pkgs, len(names)
	return true
}

// linkTree recreates the tree src under dst: directories are made, files
// hard-linked (copied across file systems), symlinks copied as links.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(target, 0o755)
		case d.Type()&os.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			os.Remove(target)
			return os.Symlink(link, target)
		default:
			return placeFile(p, target)
		}
	})
}
