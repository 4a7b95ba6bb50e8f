package elfdeps

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// TestClosureMissing copies a host program into an empty sysroot: its
// interpreter and libc must be reported missing, not taken from the host.
func TestClosureMissing(t *testing.T) {
	root := t.TempDir()
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "bin/true"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	_, err = Closure(root, "bin/true")
	var missing *MissingError
	if !errors.As(err, &missing) {
		t.Fatalf("Closure(empty sysroot) = %v, want a *MissingError", err)
	}
	for _, want := range []string{"libc.so.6", "/lib64/ld-linux-x86-64.so.2"} {
		if !slices.Contains(missing.Sonames, want) {
			t.Errorf("missing = %q, want it to hold %q", missing.Sonames, want)
		}
	}
}

// TestClosureLinks checks that links are listed with their targets, and
// that absolute links resolve inside the sysroot.
func TestClosureLinks(t *testing.T) {
	root := t.TempDir()
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Skip(err)
	}
	libc, err := filepath.EvalSymlinks("/lib/x86_64-linux-gnu/libc.so.6")
	if err != nil {
		t.Skip(err)
	}
	ld, err := filepath.EvalSymlinks("/lib64/ld-linux-x86-64.so.2")
	if err != nil {
		t.Skip(err)
	}
	write := func(rel string, src []byte) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, src, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	read := func(p string) []byte {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	write("bin/true", b)
	write("lib/x86_64-linux-gnu/libc-real.so", read(libc))
	write("lib/x86_64-linux-gnu/ld-real.so", read(ld))
	if err := os.Symlink("libc-real.so", filepath.Join(root, "lib/x86_64-linux-gnu/libc.so.6")); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "lib64"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/lib/x86_64-linux-gnu/ld-real.so", filepath.Join(root, "lib64/ld-linux-x86-64.so.2")); err != nil {
		t.Fatal(err)
	}
	got, err := Closure(root, "bin/true")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"bin/true", "lib/x86_64-linux-gnu/ld-real.so", "lib/x86_64-linux-gnu/libc-real.so", "lib/x86_64-linux-gnu/libc.so.6", "lib64/ld-linux-x86-64.so.2"}
	if !slices.Equal(got, want) {
		t.Errorf("Closure = %q, want %q", got, want)
	}
}

// TestClosureRealCriu resolves Debian's criu in drift-image's cached
// sysroot and, as root, runs it chrooted in a tree of only those files.
func TestClosureRealCriu(t *testing.T) {
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skip(err)
	}
	roots, _ := filepath.Glob(filepath.Join(cache, "drift-image", "sysroot", "criu_*[^s]"))
	if len(roots) == 0 {
		t.Skip("no criu sysroot in the drift-image cache; run drift-image first")
	}
	files, err := Closure(roots[0], "usr/sbin/criu")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"usr/sbin/criu", "lib64/ld-linux-x86-64.so.2", "lib/x86_64-linux-gnu/libc.so.6"} {
		if !slices.Contains(files, want) {
			t.Errorf("Closure(criu) = %q, lacks %q", files, want)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("chroot needs root")
	}
	dir := t.TempDir()
	for _, f := range files {
		src := filepath.Join(roots[0], f)
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, err := os.Readlink(src); err == nil {
			err = os.Symlink(target, dst)
			if err != nil {
				t.Fatal(err)
			}
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := exec.Command("chroot", dir, "/usr/sbin/criu", "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("criu --version in a chroot of its closure: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
