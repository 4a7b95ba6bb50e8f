package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Modinfo is what a module's .modinfo section says about it.
type Modinfo struct {
	Name    string   // "name=", or "" if the module does not say
	Depends []string // "depends=": modules whose symbols it uses
	Aliases []string // "alias=": device patterns it drives
	Softdep []string // "softdep=": e.g. "pre: crc32c"
}

// ParseModinfo parses the contents of a .modinfo section: NUL-separated
// key=value strings.
func ParseModinfo(b []byte) Modinfo {
	var mi Modinfo
	for _, kv := range bytes.Split(b, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			mi.Name = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					mi.Depends = append(mi.Depends, d)
				}
			}
		case "alias":
			mi.Aliases = append(mi.Aliases, v)
		case "softdep":
			mi.Softdep = append(mi.Softdep, v)
		}
	}
	return mi
}

// Depmod does depmod's job for a tree that lacks its index, such as one
// unpacked from a Debian kernel package (whose postinst runs depmod): it
// reads every module's .modinfo and writes modules.dep, modules.alias and
// modules.softdep into dir. modules.dep is written last, so its presence
// means the index is complete.
func Depmod(dir string) error {
	infos := map[string]Modinfo{} // by module name
	paths := map[string]string{}  // by module name, relative to dir
	err := filepath.WalkDir(filepath.Join(dir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), ".ko") {
			return err
		}
		mi, err := ReadModinfo(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := Name(rel)
		infos[name], paths[name] = mi, filepath.ToSlash(rel)
		return nil
	})
	if err != nil {
		return fmt.Errorf("depmod %s: %w", dir, err)
	}
	names := make([]string, 0, len(infos))
	for n := range infos {
		names = append(names, n)
	}
	sort.Strings(names)
	var alias, softdep bytes.Buffer
	for _, n := range names {
		for _, a := range infos[n].Aliases {
			fmt.Fprintf(&alias, "alias %s %s\n", a, n)
		}
		for _, s := range infos[n].Softdep {
			fmt.Fprintf(&softdep, "softdep %s %s\n", n, s)
		}
	}
	dep, err := depLines(names, infos, paths)
	if err != nil {
		return fmt.Errorf("depmod %s: %w", dir, err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{AliasFile, alias.Bytes()}, {SoftdepFile, softdep.Bytes()}, {DepFile, dep}} {
		if err := writeAtomic(filepath.Join(dir, f.name), f.data); err != nil {
			return fmt.Errorf("depmod %s: %w", dir, err)
		}
	}
	return nil
}

// depLines renders modules.dep: each module with every module it needs,
// transitively, nearest first.
func depLines(names []string, infos map[string]Modinfo, paths map[string]string) ([]byte, error) {
	var b bytes.Buffer
	for _, n := range names {
		var closure []string
		seen := map[string]bool{n: true}
		queue := []string{n}
		for len(queue) > 0 {
			cur := queue[0]
			queue = queue[1:]
			for _, d := range infos[cur].Depends {
				d = Normalize(d)
				if _, ok := paths[d]; !ok {
					return nil, fmt.Errorf("%s needs %s, which is not in the tree", n, d)
				}
				if !seen[d] {
					seen[d] = true
					closure = append(closure, d)
					queue = append(queue, d)
				}
			}
		}
		b.WriteString(paths[n] + ":")
		for _, d := range closure {
			b.WriteString(" " + paths[d])
		}
		b.WriteByte('\n')
	}
	return b.Bytes(), nil
}

// ReadModinfo reads the .modinfo section of the module file at p, which
// may be compressed (.ko.gz, .ko.xz, .ko.zst).
func ReadModinfo(p string) (Modinfo, error) {
	raw, err := readModule(p)
	if err != nil {
		return Modinfo{}, err
	}
	f, err := elf.NewFile(bytes.NewReader(raw))
	if err != nil {
		return Modinfo{}, fmt.Errorf("read module %s: %w", p, err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return Modinfo{}, fmt.Errorf("read module %s: no .modinfo section", p)
	}
	b, err := sec.Data()
	if err != nil {
		return Modinfo{}, fmt.Errorf("read module %s: %w", p, err)
	}
	return ParseModinfo(b), nil
}

// readModule returns the uncompressed bytes of the module file at p.
func readModule(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("read module: %w", err)
	}
	defer f.Close()
	var r io.Reader = f
	switch {
	case strings.HasSuffix(p, ".ko.gz"):
		r, err = gzip.NewReader(f)
	case strings.HasSuffix(p, ".ko.xz"):
		r, err = xz.NewReader(f)
	case strings.HasSuffix(p, ".ko.zst"):
		var d *zstd.Decoder
		d, err = zstd.NewReader(f)
		if err == nil {
			defer d.Close()
			r = d
		}
	}
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", p, err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read module %s: %w", p, err)
	}
	return b, nil
}

func writeAtomic(p string, data []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
