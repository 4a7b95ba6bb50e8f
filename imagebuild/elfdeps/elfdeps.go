// Package elfdeps finds the files a dynamically linked program needs to run
// (its ELF interpreter and DT_NEEDED libraries, recursively) in a sysroot: a
// directory holding unpacked Debian packages rather than the host's own
// libraries. drift-image uses it to put Debian's criu into the initramfs with
// exactly the libraries it loads.
package elfdeps

import (
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

// LibDirs are the directories, relative to the sysroot, that Debian's
// amd64 ld.so searches by default.
var LibDirs = []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", "lib64"}

// MissingError lists the sonames (and interpreter paths) the sysroot lacks.
type MissingError struct {
	Sonames []string
}

func (e *MissingError) Error() string {
	return "libraries not found in the sysroot: " + strings.Join(e.Sonames, ", ")
}

// Closure returns the paths, relative to root and sorted, of the programs
// bins (relative to root) and of everything they load: the interpreter and
// the DT_NEEDED libraries, recursively. A library reached through symlinks
// (libfoo.so.1 -> libfoo.so.1.2.3) is listed with each link and its target,
// so copying the list keeps the links working. Sonames that cannot be found
// are reported together as a *MissingError.
func Closure(root string, bins ...string) ([]string, error) {
	c := closure{root: root, files: map[string]bool{}, sonames: map[string]bool{}}
	var missing []string
	queue := append([]string(nil), bins...)
	for len(queue) > 0 {
		rel := queue[0]
		queue = queue[1:]
		if c.files[rel] {
			continue
		}
		real, err := c.add(rel)
		if err != nil {
			return nil, err
		}
		interp, needed, err := imports(filepath.Join(root, real))
		if err != nil {
			return nil, err
		}
		if rel := strings.TrimPrefix(interp, "/"); rel != "" && !c.sonames[rel] {
			c.sonames[rel] = true
			if _, err := os.Lstat(filepath.Join(root, rel)); err == nil {
				queue = append(queue, rel)
			} else {
				missing = append(missing, interp)
			}
		}
		for _, so := range needed {
			if c.sonames[so] {
				continue
			}
			c.sonames[so] = true
			if p := c.find(so); p != "" {
				queue = append(queue, p)
			} else {
				missing = append(missing, so)
			}
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, &MissingError{Sonames: missing}
	}
	out := make([]string, 0, len(c.files))
	for f := range c.files {
		out = append(out, f)
	}
	sort.Strings(out)
	return out, nil
}

type closure struct {
	root    string
	files   map[string]bool // relative paths collected
	sonames map[string]bool // sonames and interpreters looked up
}

// find returns the relative path of the library soname, or "".
func (c *closure) find(soname string) string {
	for _, d := range LibDirs {
		rel := path.Join(d, soname)
		// Lstat: an absolute link points into the sysroot, not the host;
		// add resolves it there.
		if _, err := os.Lstat(filepath.Join(c.root, rel)); err == nil {
			return rel
		}
	}
	return ""
}

// add records rel and the symlinks it goes through inside the sysroot, and
// returns the relative path of the regular file it ends at.
func (c *closure) add(rel string) (string, error) {
	for hops := 0; hops < 40; hops++ {
		c.files[rel] = true
		p := filepath.Join(c.root, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", fmt.Errorf("resolve %s in sysroot: %w", rel, err)
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			return rel, nil
		}
		target, err := os.Readlink(p)
		if err != nil {
			return "", fmt.Errorf("resolve %s in sysroot: %w", rel, err)
		}
		if path.IsAbs(target) {
			rel = strings.TrimPrefix(path.Clean(target), "/")
		} else {
			rel = path.Join(path.Dir(rel), target)
		}
		if strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("resolve %s in sysroot: link leaves the sysroot", rel)
		}
	}
	return "", fmt.Errorf("resolve %s in sysroot: too many links", rel)
}

// imports returns the ELF interpreter and DT_NEEDED entries of the file at p.
func imports(p string) (interp string, needed []string, err error) {
	f, err := elf.Open(p)
	if err != nil {
		return "", nil, fmt.Errorf("read ELF %s: %w", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			b := make([]byte, prog.Filesz)
			if _, err := prog.ReadAt(b, 0); err != nil {
				return "", nil, fmt.Errorf("read ELF interpreter of %s: %w", p, err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err = f.ImportedLibraries()
	if err != nil && !errors.Is(err, elf.ErrNoSymbols) {
		return "", nil, fmt.Errorf("read DT_NEEDED of %s: %w", p, err)
	}
	return interp, needed, nil
}
