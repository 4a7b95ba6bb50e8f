package storage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestBeneathStaysInside(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, target := range map[string]string{"abs": outside, "rel": "../../" + filepath.Base(outside), "in": "a/b"} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	e := &exportFS{root: root}
	for _, p := range []string{"abs/secret", "rel/secret", "../" + filepath.Base(outside) + "/secret", "a/../../x"} {
		if fi, err := e.lstatBeneath(p); err == nil {
			t.Errorf("lstat %s: %v, want an error: it is outside the export", p, fi.Name())
		}
		if f, err := e.openBeneath(p, os.O_RDONLY, 0); err == nil {
			f.Close()
			t.Errorf("open %s: opened a file outside the export", p)
		}
	}
	if _, err := e.openBeneath("abs/new", os.O_WRONLY|os.O_CREATE, 0o644); err == nil {
		t.Error("created a file outside the export")
	}
	if _, err := os.Stat(filepath.Join(outside, "new")); err == nil {
		t.Error("a file was created outside the export")
	}
	// Inside: a symlink's own attributes, a file through a symlink that
	// stays inside, and the errors os.Root gives.
	if fi, err := e.lstatBeneath("in"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("lstat in: %v %v, want the symlink itself", fi, err)
	}
	if fi, err := e.lstatBeneath("in/f"); err != nil || fi.Size() != 1 {
		t.Errorf("lstat in/f: %v %v", fi, err)
	}
	if _, err := e.lstatBeneath("a/missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("lstat a missing file: %v, want ErrNotExist", err)
	}
	f, err := e.openBeneath("a/b/g", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := e.openBeneath("a/b/g", os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600); !errors.Is(err, fs.ErrExist) {
		t.Errorf("exclusive create of a file that exists: %v, want ErrExist", err)
	}
}

// BenchmarkLstat compares a lookup deep in the export through os.Root
// (a directory opened per component) with openat2.
func BenchmarkLstat(b *testing.B) {
	dir := b.TempDir()
	deep := filepath.Join("drift", "arrays", "a-d1b102-1", "tasks")
	if err := os.MkdirAll(filepath.Join(dir, deep), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, deep, "7.1.ok"), []byte("{}"), 0o644); err != nil {
		b.Fatal(err)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		b.Fatal(err)
	}
	defer root.Close()
	e := &exportFS{root: root}
	name := filepath.Join(deep, "7.1.ok")
	b.Run("os.Root", func(b *testing.B) {
		for b.Loop() {
			if _, err := root.Lstat(name); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("openat2", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.lstatBeneath(name); err != nil {
				b.Fatal(err)
			}
		}
	})
}
