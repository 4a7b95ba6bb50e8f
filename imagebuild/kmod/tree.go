// Package kmod reads a kernel's module tree (/lib/modules/VERSION), resolves
// module names with their dependencies from modules.dep, and writes the index
// files for a subset of the modules. drift-image uses it to put only the
// modules drift needs into the initramfs, in a layout u-root's pkg/kmodule
// (and modprobe) can load from.
package kmod

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Index file names in a module tree.
const (
	DepFile            = "modules.dep"
	AliasFile          = "modules.alias"
	SoftdepFile        = "modules.softdep"
	BuiltinFile        = "modules.builtin"
	BuiltinModinfoFile = "modules.builtin.modinfo"
)

// ErrUnknown reports a module name that is neither a module nor built into
// the kernel.
var ErrUnknown = errors.New("no such module in this kernel")

// Tree is a kernel module tree with its modules.dep read.
type Tree struct {
	Dir     string              // the tree, e.g. /lib/modules/6.1.0-56-amd64
	path    map[string]string   // module name -> path relative to Dir
	deps    map[string][]string // module name -> names of all modules it needs, from modules.dep
	builtin map[string]bool     // names built into the kernel
}

// Name returns the module name of a module file path: its base name without
// the .ko (and compression) suffix, with '-' written as '_', as the kernel
// names modules.
func Name(p string) string {
	base := path.Base(filepath.ToSlash(p))
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return Normalize(base)
}

// Normalize writes a module name the way the kernel does ('-' as '_').
func Normalize(name string) string { return strings.ReplaceAll(name, "-", "_") }

// Open reads dir's modules.dep and modules.builtin. A tree without
// modules.dep (such as one unpacked from a Debian kernel package) needs
// Depmod first.
func Open(dir string) (*Tree, error) {
	t := &Tree{Dir: dir, path: map[string]string{}, deps: map[string][]string{}, builtin: map[string]bool{}}
	if err := readLines(filepath.Join(dir, DepFile), t.addDepLine); err != nil {
		return nil, err
	}
	err := readLines(filepath.Join(dir, BuiltinFile), func(line string) error {
		t.builtin[Name(line)] = true
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	return t, nil
}

func (t *Tree) addDepLine(line string) error {
	mod, deps, ok := strings.Cut(line, ":")
	if !ok {
		return fmt.Errorf("line %q has no ':'", line)
	}
	name := Name(mod)
	t.path[name] = strings.TrimSpace(mod)
	for _, d := range strings.Fields(deps) {
		t.deps[name] = append(t.deps[name], Name(d))
	}
	return nil
}

// Builtin reports whether the module name is built into the kernel.
func (t *Tree) Builtin(name string) bool { return t.builtin[Normalize(name)] }

// Path returns the path of module name relative to Dir, or "" if the
// kernel has no such loadable module.
func (t *Tree) Path(name string) string { return t.path[Normalize(name)] }

// Resolve returns the loadable modules that names need, each name's
// dependencies included (recursively), without duplicates, every module
// after the modules it needs. A builtin name needs nothing; a name the kernel
// does not know is an error wrapping ErrUnknown.
func (t *Tree) Resolve(names ...string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	var visit func(name string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		for _, d := range t.deps[name] {
			visit(d)
		}
		out = append(out, name)
	}
	for _, n := range names {
		name := Normalize(n)
		if _, ok := t.path[name]; ok {
			visit(name)
		} else if !t.builtin[name] {
			return nil, fmt.Errorf("%s: %w", n, ErrUnknown)
		}
	}
	return out, nil
}

// readLines calls fn for each non-empty line of the file at p.
func readLines(p string, fn func(string) error) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("read module index: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			if err := fn(line); err != nil {
				return fmt.Errorf("read %s: %w", p, err)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	return nil
}
