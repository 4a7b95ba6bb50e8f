package imagebuild

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/google/go-cmp/cmp"
)

func TestParseDepends(t *testing.T) {
	tests := []struct {
		field string
		want  []string
	}{
		{field: "", want: nil},
		{field: "libc6 (>= 2.34)", want: []string{"libc6"}},
		{field: "python3-protobuf, python3:any, libbsd0 (>= 0.6.0)", want: []string{"python3-protobuf", "python3", "libbsd0"}},
		{field: "libgcc-s1 | libgcc1, default-mta | mail-transport-agent", want: []string{"libgcc-s1", "default-mta"}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, parseDepends(tt.field)); diff != "" {
				t.Errorf("parseDepends(%q) (-want +got):\n%s", tt.field, diff)
			}
		})
	}
}

func TestParseShow(t *testing.T) {
	out := "Package: criu\nVersion: 3.17.1-2+deb12u2\nDepends: python3:any, libc6 (>= 2.34)\nDescription: checkpoint\n\n" +
		"Package: libc6\nVersion: 2.36-9+deb12u13\nPre-Depends: libgcc-s1\nDepends: libidn2-0\n"
	want := map[string]pkgInfo{
		"criu":  {Name: "criu", Version: "3.17.1-2+deb12u2", Depends: []string{"python3", "libc6"}},
		"libc6": {Name: "libc6", Version: "2.36-9+deb12u13", Depends: []string{"libgcc-s1", "libidn2-0"}},
	}
	if diff := cmp.Diff(want, parseShow([]byte(out))); diff != "" {
		t.Errorf("parseShow (-want +got):\n%s", diff)
	}
}

// fakeBzImage writes a file with a bzImage header naming version.
func fakeBzImage(t *testing.T, version string) string {
	t.Helper()
	b := make([]byte, 0x400)
	copy(b[0x202:], "HdrS")
	b[0x20e] = 0x100 & 0xff // the version string is at 0x100+0x200
	b[0x20f] = 0x100 >> 8
	copy(b[0x300:], version+" (debian-kernel@lists.debian.org) #1 SMP\x00")
	p := filepath.Join(t.TempDir(), "vmlinuz")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestBzImageVersion(t *testing.T) {
	notKernel := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(notKernel, []byte(strings.Repeat("root:x:0:0\n", 100)), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr error
	}{
		{name: "bzImage", path: fakeBzImage(t, "6.1.0-56-amd64"), want: "6.1.0-56-amd64"},
		{name: "not a kernel", path: notKernel, wantErr: ErrNotBzImage},
		{name: "missing", path: filepath.Join(t.TempDir(), "nope"), wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := bzImageVersion(tt.path)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("bzImageVersion(%s) = %q, %v, want %q, %v", tt.name, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestSupportsZstd(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, config string
		want         bool
	}{
		{name: "zstd", config: "CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n", want: true},
		{name: "gzip only", config: "CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, tt.name)
			if err := os.WriteFile(p, []byte(tt.config), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := supportsZstd(p); got != tt.want {
				t.Errorf("supportsZstd(%q) = %v, want %v", tt.config, got, tt.want)
			}
		})
	}
	if supportsZstd(filepath.Join(dir, "missing")) {
		t.Error("supportsZstd(missing config) = true, want false (gzip is the safe choice)")
	}
}

// testBuilder returns a builder with an output and staging directory.
func testBuilder(t *testing.T, cfg Config) *builder {
	t.Helper()
	if cfg.Out == "" {
		cfg.Out = t.TempDir()
	}
	cfg.Cache = t.TempDir()
	cfg.Progress = io.Discard
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	b, err := newBuilder(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b.staging = t.TempDir()
	return b
}

func TestKey(t *testing.T) {
	given, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	givenFile := filepath.Join(t.TempDir(), "given.key")
	if err := clusterkey.WriteFile(givenFile, given); err != nil {
		t.Fatal(err)
	}
	existing, _ := clusterkey.Generate()
	rekeyed := clusterkey.Cluster{ID: "0123456789abcdef", Key: given} // written by drift rekey --out
	rekeyedFile := filepath.Join(t.TempDir(), "rekeyed.key")
	if err := clusterkey.WriteCluster(rekeyedFile, rekeyed); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(badFile, []byte("0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		keyFile    string // --key-file
		outHas     []byte // out/cluster.key before the build, nil: none
		want       *clusterkey.Cluster
		wantStaged bool
		wantErr    error
	}{
		{name: "new", wantStaged: true},
		{name: "reuse", outHas: []byte(existing.Hex() + "\n"), want: ptr(clusterkey.Of(existing))},
		{name: "key file wins", keyFile: givenFile, outHas: []byte(existing.Hex()), want: ptr(clusterkey.Of(given)), wantStaged: true},
		{name: "rekeyed key file keeps the cluster", keyFile: rekeyedFile, want: &rekeyed, wantStaged: true},
		{name: "malformed existing", outHas: []byte("not a key\n"), wantErr: clusterkey.ErrMalformed},
		{name: "malformed key file", keyFile: badFile, wantErr: clusterkey.ErrMalformed},
		{name: "missing key file", keyFile: filepath.Join(t.TempDir(), "none.key"), wantErr: os.ErrNotExist},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := testBuilder(t, Config{KeyFile: tt.keyFile})
			if tt.outHas != nil {
				if err := os.WriteFile(filepath.Join(b.cfg.Out, KeyName), tt.outHas, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			k, err := b.key()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("key() error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			if tt.want != nil && k != *tt.want {
				t.Errorf("key() = %v, want %v", k, *tt.want)
			}
			staged, err := clusterkey.LoadCluster(filepath.Join(b.staging, KeyName))
			if gotStaged := err == nil; gotStaged != tt.wantStaged {
				t.Fatalf("key staged = %v, want %v", gotStaged, tt.wantStaged)
			}
			if tt.wantStaged && staged != k {
				t.Errorf("staged key %v, want %v", staged, k)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestPublish(t *testing.T) {
	b := testBuilder(t, Config{})
	// A previous gzip build and a stale ISO in the output directory.
	for _, name := range []string{"initramfs.cpio.gz", ISOName} {
		if err := os.WriteFile(filepath.Join(b.cfg.Out, name), []byte("old"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{KernelName, "initramfs.cpio.zst", ISOName, PXEDirName + "/boot.ipxe"} {
		p := filepath.Join(b.staging, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("new "+name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m := &Manifest{Version: "v1", Kernel: KernelName, Initramfs: "initramfs.cpio.zst", ISO: ISOName, PXEDir: PXEDirName}
	if err := b.publish(m); err != nil {
		t.Fatal(err)
	}
	got, err := ReadManifest(b.cfg.Out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(m, got); diff != "" {
		t.Errorf("manifest (-want +got):\n%s", diff)
	}
	for name, want := range map[string]string{
		ISOName:                   "new " + ISOName,
		"initramfs.cpio.zst":      "new initramfs.cpio.zst",
		PXEDirName + "/boot.ipxe": "new " + PXEDirName + "/boot.ipxe",
	} {
		if b, err := os.ReadFile(filepath.Join(b.cfg.Out, name)); string(b) != want {
			t.Errorf("out/%s = %q, %v, want %q", name, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(b.cfg.Out, "initramfs.cpio.gz")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old gzip initramfs is still in out/: %v", err)
	}
	raw, _ := os.ReadFile(filepath.Join(b.cfg.Out, ManifestName))
	if !json.Valid(raw) {
		t.Errorf("image.json is not JSON: %s", raw)
	}
}

// TestBuildFailsCleanly checks that a bad --kernel stops the build before
// anything reaches the output directory.
func TestBuildFailsCleanly(t *testing.T) {
	if err := checkISOTools(); err != nil {
		t.Skip(err)
	}
	out := t.TempDir()
	_, err := Build(t.Context(), Config{Out: out, Cache: t.TempDir(), Kernel: "/etc/passwd", Progress: io.Discard})
	if !errors.Is(err, ErrNotBzImage) {
		t.Fatalf("Build(--kernel /etc/passwd) = %v, want ErrNotBzImage", err)
	}
	if !strings.Contains(err.Error(), "--kernel") {
		t.Errorf("error %q does not say which flag to fix", err)
	}
	entries, _ := os.ReadDir(out)
	if len(entries) != 0 {
		t.Errorf("output directory holds %d entries after a failed build, want none", len(entries))
	}
}

// TestModulesUnknown checks that a listed module the kernel lacks fails the
// build with the list and the module named.
func TestModulesUnknown(t *testing.T) {
	b := testBuilder(t, Config{})
	tree := t.TempDir()
	if err := os.WriteFile(filepath.Join(tree, "modules.dep"), []byte("kernel/drivers/net/e1000.ko:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, _, err := b.modules(kernel{Version: "6.1.0-test", Modules: tree})
	if err == nil {
		t.Fatal("modules() with a kernel lacking listed modules succeeded")
	}
	for _, want := range []string{"configs/modules/always.list", "crc32c_generic", "6.1.0-test"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("modules() error %q does not name %q", err, want)
		}
	}
}
