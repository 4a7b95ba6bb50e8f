package imagebuild

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftcluster/drift/imagebuild/debpkg"
)

func TestLeftOut(t *testing.T) {
	tests := []struct {
		rel  string
		want bool
	}{
		{"usr/bin/python3.11", false},
		{"usr/share/man/man1/gawk.1.gz", true},
		{"usr/share/man", true},
		{"usr/share/info/gawk.info.gz", true},
		{"usr/share/lintian/overrides/gawk", true},
		{"usr/share/doc/gawk/NEWS.gz", true},
		{"usr/share/doc/gawk/copyright", false},
		{"usr/share/doc-base/gawk", false},
		{"usr/share/python3/debian_defaults", false},
		{"usr/share/manual", false},
	}
	for _, tt := range tests {
		if got := leftOut(tt.rel); got != tt.want {
			t.Errorf("leftOut(%q) = %v, want %v", tt.rel, got, tt.want)
		}
	}
}

// writeTree makes files (path -> contents; "-> target" makes a symlink)
// under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, body := range files {
		full := filepath.Join(dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if target, ok := strings.CutPrefix(body, "-> "); ok {
			if err := os.Symlink(target, full); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(full, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPackageTree builds the tree of two unpacked packages (one of them
// the rest of a package the image has), makes the links of gawk's real
// postinst, and, where mksquashfs is installed, the squashfs.
func TestPackageTree(t *testing.T) {
	dir := t.TempDir()
	gawk := filepath.Join(dir, "gawk_1:5.2.1-2")
	writeTree(t, gawk, map[string]string{
		"usr/bin/gawk":                 "gawk program",
		"usr/share/awk/ord.awk":        "function ord()",
		"usr/share/man/man1/gawk.1.gz": "manual page",
		"usr/share/doc/gawk/copyright": "GPL",
		"usr/share/doc/gawk/NEWS.gz":   "news",
		"usr/share/doc/gawk-doc":       "-> gawk",
		"usr/share/info/gawk.info.gz":  "info",
	})
	if err := os.MkdirAll(filepath.Join(gawk, "usr/lib/x86_64-linux-gnu/gawk"), 0o755); err != nil {
		t.Fatal(err)
	}
	libc := filepath.Join(dir, "libc6")
	writeTree(t, libc, map[string]string{
		"lib/x86_64-linux-gnu/libc.so.6": "in the image already",
		"lib/x86_64-linux-gnu/libm.so.6": "libm",
		"lib64/ld-linux-x86-64.so.2":     "-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
	})
	tree := filepath.Join(dir, "tree")
	set := &packageSet{}
	if err := set.add(gawk, tree, nil); err != nil {
		t.Fatal(err)
	}
	inImage := map[string]bool{"lib/x86_64-linux-gnu/libc.so.6": true, "lib64/ld-linux-x86-64.so.2": true}
	if err := set.add(libc, tree, inImage); err != nil {
		t.Fatal(err)
	}
	if want := int64(len("gawk program") + len("function ord()") + len("GPL") + len("libm")); set.Unpacked != want {
		t.Errorf("unpacked %d bytes, want %d", set.Unpacked, want)
	}
	if want := int64(len("manual page") + len("news") + len("info")); set.LeftOut != want {
		t.Errorf("left out %d bytes, want %d", set.LeftOut, want)
	}

	script, err := os.ReadFile("debpkg/testdata/gawk.postinst")
	if err != nil {
		t.Fatal(err)
	}
	alts, _ := debpkg.ParseAlternatives(script)
	made, err := makeAlternatives(tree, debpkg.Choose(alts), func(msg string, args ...any) { t.Log(msg, args) })
	if err != nil {
		t.Fatal(err)
	}
	if made != 2 { // awk and its slave nawk; the man page slaves point at what was left out
		t.Errorf("makeAlternatives made %d links, want 2 (awk, nawk)", made)
	}
	for link, want := range map[string]string{
		"usr/bin/awk":            "/etc/alternatives/awk",
		"etc/alternatives/awk":   "/usr/bin/gawk",
		"usr/bin/nawk":           "/etc/alternatives/nawk",
		"etc/alternatives/nawk":  "/usr/bin/gawk",
		"usr/share/doc/gawk-doc": "", // left out
	} {
		got, err := os.Readlink(filepath.Join(tree, link))
		if want == "" {
			if err == nil {
				t.Errorf("/%s is in the tree (-> %s), want it left out", link, got)
			}
			continue
		}
		if got != want {
			t.Errorf("/%s -> %q (%v), want -> %q", link, got, err, want)
		}
	}
	for _, p := range []string{"usr/share/man", "usr/share/doc/gawk/NEWS.gz", "lib/x86_64-linux-gnu/libc.so.6", "etc/alternatives/awk.1.gz"} {
		if _, err := os.Lstat(filepath.Join(tree, p)); err == nil {
			t.Errorf("/%s is in the tree, want it left out", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(tree, "usr/share/doc/gawk/copyright")); string(b) != "GPL" {
		t.Errorf("copyright = %q, %v, want it kept", b, err)
	}

	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not found (install squashfs-tools): the squashfs itself is not tested")
	}
	out := filepath.Join(dir, "packages.squashfs")
	if err := makeSquashfs(t.Context(), tree, out); err != nil {
		t.Fatal(err)
	}
	list, err := exec.Command("unsquashfs", "-lls", "-d", "", out).Output()
	if err != nil {
		t.Fatalf("unsquashfs -lls: %v", err)
	}
	listing := string(list)
	for _, want := range []string{"root/root", "/usr/bin/awk -> /etc/alternatives/awk", "/usr/bin/gawk", "/lib/x86_64-linux-gnu/libm.so.6"} {
		if !strings.Contains(listing, want) {
			t.Errorf("the squashfs lacks %q:\n%s", want, listing)
		}
	}
	// Empty directories (lib64 once the image's ld.so link is left out)
	// would be overlays for nothing.
	for _, bad := range []string{"/lib64", "/usr/lib", "libc.so.6"} {
		if strings.Contains(listing, bad) {
			t.Errorf("the squashfs holds %q:\n%s", bad, listing)
		}
	}
}

// TestBuildRefusesUnknownPackage checks that a package Debian does not
// have stops the build, naming it, before the output directory exists.
// It reads the host's apt lists.
func TestBuildRefusesUnknownPackage(t *testing.T) {
	if _, err := exec.LookPath("apt-cache"); err != nil {
		t.Skip("no apt-cache on this host")
	}
	if _, err := exec.LookPath("mksquashfs"); err != nil {
		t.Skip("mksquashfs not found (install squashfs-tools)")
	}
	out := filepath.Join(t.TempDir(), "out")
	_, err := Build(t.Context(), Config{Out: out, Cache: t.TempDir(), Packages: []string{"python3", "pyhton3"}, Progress: io.Discard})
	if err == nil {
		t.Fatal("Build with a misspelt package succeeded")
	}
	if strings.Contains(err.Error(), "apt knows no packages") {
		t.Skip(err)
	}
	want := `package "pyhton3" is not in Debian's archive (apt-cache knows no such package): check the name`
	if err.Error() != want {
		t.Errorf("Build error = %q, want %q", err, want)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the output directory exists after the refusal (%v), want it untouched", err)
	}
}
