package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeTree writes a small module tree: nf_tables needs nfnetlink and
// libcrc32c; nfsv4 needs nfs, which needs sunrpc; af_packet is builtin.
func fakeTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		DepFile: "kernel/net/netfilter/nf_tables.ko: kernel/net/netfilter/nfnetlink.ko kernel/lib/libcrc32c.ko\n" +
			"kernel/net/netfilter/nfnetlink.ko:\n" +
			"kernel/lib/libcrc32c.ko:\n" +
			"kernel/fs/nfs/nfsv4.ko: kernel/fs/nfs/nfs.ko\n" +
			"kernel/fs/nfs/nfs.ko: kernel/net/sunrpc/sunrpc.ko\n" +
			"kernel/net/sunrpc/sunrpc.ko:\n" +
			"kernel/fs/nls/nls_iso8859-1.ko.xz:\n" +
			"kernel/drivers/net/e1000.ko:\n",
		AliasFile: "# Aliases extracted from modules themselves.\n" +
			"alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000\n" +
			"alias fs-nfs4 nfsv4\n" +
			"alias nls_iso8859-1 nls_iso8859_1\n",
		SoftdepFile: "softdep libcrc32c pre: crc32c\nsoftdep e1000 pre: foo\n",
		BuiltinFile: "kernel/net/packet/af_packet.ko\n",
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestResolve(t *testing.T) {
	tree, err := Open(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		in      []string
		want    []string
		wantErr error
	}{
		{name: "leaf", in: []string{"e1000"}, want: []string{"e1000"}},
		{name: "deps first", in: []string{"nf_tables"}, want: []string{"nfnetlink", "libcrc32c", "nf_tables"}},
		{name: "transitive", in: []string{"nfsv4"}, want: []string{"sunrpc", "nfs", "nfsv4"}},
		{name: "no duplicates", in: []string{"nfs", "nfsv4", "sunrpc"}, want: []string{"sunrpc", "nfs", "nfsv4"}},
		{name: "builtin needs nothing", in: []string{"af_packet", "af-packet"}, want: nil},
		{name: "hyphen or underscore", in: []string{"nls_iso8859_1", "nls_iso8859-1"}, want: []string{"nls_iso8859_1"}},
		{name: "unknown", in: []string{"e1000", "nosuchmod"}, wantErr: ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tree.Resolve(tt.in...)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Resolve(%q) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestWriteIndex(t *testing.T) {
	tree, err := Open(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	mods, err := tree.Resolve("nf_tables", "nls_iso8859-1")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	if err := tree.WriteIndex(out, mods); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		DepFile: "kernel/net/netfilter/nfnetlink.ko:\n" +
			"kernel/lib/libcrc32c.ko:\n" +
			"kernel/net/netfilter/nf_tables.ko: kernel/lib/libcrc32c.ko kernel/net/netfilter/nfnetlink.ko\n" +
			"kernel/fs/nls/nls_iso8859_1.ko.xz:\n",
		AliasFile:   "alias nls_iso8859-1 nls_iso8859_1\n",
		SoftdepFile: "softdep libcrc32c pre: crc32c\n",
		BuiltinFile: "kernel/net/packet/af_packet.ko\n",
	}
	for name, text := range want {
		t.Run(name, func(t *testing.T) {
			got, err := os.ReadFile(filepath.Join(out, name))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(text, string(got)); diff != "" {
				t.Errorf("%s (-want +got):\n%s", name, diff)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(out, BuiltinModinfoFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s written though the tree has none: %v", BuiltinModinfoFile, err)
	}
}

func TestParseModinfo(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Modinfo
	}{
		{name: "empty", in: "", want: Modinfo{}},
		{
			name: "full",
			in:   "license=GPL\x00depends=nfnetlink,libcrc32c\x00alias=nfnetlink-subsys-10\x00alias=nft-set\x00softdep=pre: crc32c\x00name=nf_tables\x00",
			want: Modinfo{Name: "nf_tables", Depends: []string{"nfnetlink", "libcrc32c"}, Aliases: []string{"nfnetlink-subsys-10", "nft-set"}, Softdep: []string{"pre: crc32c"}},
		},
		{name: "empty depends", in: "depends=\x00name=e1000\x00", want: Modinfo{Name: "e1000"}},
		{name: "padding", in: "\x00\x00name=tun\x00\x00", want: Modinfo{Name: "tun"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseModinfo([]byte(tt.in))); diff != "" {
				t.Errorf("ParseModinfo(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// TestDepmodRealKernel runs Depmod on a few modules copied from a Debian
// kernel in drift-image's cache, when there is one.
func TestDepmodRealKernel(t *testing.T) {
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Skip(err)
	}
	trees, _ := filepath.Glob(filepath.Join(cache, "drift-image", "root", "linux-image-*", "lib", "modules", "*"))
	if len(trees) == 0 {
		t.Skip("no Debian kernel in the drift-image cache; run drift-image first")
	}
	dir := t.TempDir()
	for _, rel := range []string{"kernel/net/netfilter/nf_tables.ko", "kernel/net/netfilter/nfnetlink.ko", "kernel/lib/libcrc32c.ko"} {
		b, err := os.ReadFile(filepath.Join(trees[0], rel))
		if err != nil {
			t.Skip(err) // another kernel layout
		}
		dst := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := Depmod(dir); err != nil {
		t.Fatal(err)
	}
	tree, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tree.Resolve("nf_tables")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"nfnetlink", "libcrc32c", "nf_tables"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Resolve(nf_tables) in the real kernel (-want +got):\n%s", diff)
	}
}
