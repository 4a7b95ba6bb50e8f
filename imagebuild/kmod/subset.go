package kmod

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// InstallPath is where module name goes in a subset tree, relative to the
// tree: its path in Dir with the file name written as the module name
// (nls_iso8859-1.ko becomes nls_iso8859_1.ko), so that loaders that look a
// module up by file name find it under either spelling's normal form.
func (t *Tree) InstallPath(name string) string {
	rel := t.path[Normalize(name)]
	dir, base := path.Split(rel)
	suffix := ""
	if i := strings.Index(base, ".ko"); i >= 0 {
		suffix = base[i:]
	}
	return dir + Name(base) + suffix
}

// WriteIndex writes into dir the index files of a tree holding only mods
// (as placed by InstallPath): modules.dep, modules.alias and
// modules.softdep filtered to mods, and modules.builtin and
// modules.builtin.modinfo copied whole where Dir has them.
func (t *Tree) WriteIndex(dir string, mods []string) error {
	in := map[string]bool{}
	for _, m := range mods {
		in[Normalize(m)] = true
	}
	var dep bytes.Buffer
	for _, m := range mods {
		closure, err := t.Resolve(m)
		if err != nil {
			return fmt.Errorf("write module index: %w", err)
		}
		fmt.Fprintf(&dep, "%s:", t.InstallPath(m))
		// modules.dep lists a module's needs nearest first.
		for i := len(closure) - 2; i >= 0; i-- {
			fmt.Fprintf(&dep, " %s", t.InstallPath(closure[i]))
		}
		dep.WriteByte('\n')
	}
	if err := os.WriteFile(filepath.Join(dir, DepFile), dep.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write module index: %w", err)
	}
	// "alias PATTERN MODULE" and "softdep MODULE pre: ... post: ...".
	for _, f := range []struct {
		name  string
		field int // which field names the module
	}{{AliasFile, 2}, {SoftdepFile, 1}} {
		if err := t.filterIndex(dir, f.name, f.field, in); err != nil {
			return err
		}
	}
	for _, name := range []string{BuiltinFile, BuiltinModinfoFile} {
		if err := copyIfExists(filepath.Join(t.Dir, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// filterIndex copies the lines of Dir's index file name whose module (the
// line's field numbered field) is in mods. A missing file is skipped.
func (t *Tree) filterIndex(dir, name string, field int, mods map[string]bool) error {
	var out bytes.Buffer
	err := readLines(filepath.Join(t.Dir, name), func(line string) error {
		if strings.HasPrefix(line, "#") {
			return nil
		}
		if f := strings.Fields(line); len(f) > field && mods[Normalize(f[field])] {
			out.WriteString(line + "\n")
		}
		return nil
	})
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name), out.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write module index: %w", err)
	}
	return nil
}

func copyIfExists(src, dst string) error {
	b, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy module index: %w", err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("copy module index: %w", err)
	}
	return nil
}
