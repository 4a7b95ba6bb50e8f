package initramfs

import (
	"bytes"
	"compress/gzip"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// TestToolsImports checks that tools.go imports exactly the commands in
// Commands, so go.mod keeps what the busybox build needs.
func TestToolsImports(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "tools.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		got = append(got, p)
	}
	want := commandPaths(nil)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("tools.go imports %q, want the Commands %q", got, want)
	}
}

func TestCommandPaths(t *testing.T) {
	tests := []struct {
		name string
		in   []string
		want []string
	}{
		{name: "core name", in: []string{"ls"}, want: []string{uroot + "ls"}},
		{name: "import path kept", in: []string{"github.com/u-root/u-root/cmds/exp/pxeserver"}, want: []string{"github.com/u-root/u-root/cmds/exp/pxeserver"}},
		{name: "nil is the default", in: nil, want: commandPaths(Commands)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commandPaths(tt.in); !slices.Equal(got, tt.want) {
				t.Errorf("commandPaths(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCompressFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "in.cpio")
	data := bytes.Repeat([]byte("070701 drift initramfs "), 10000)
	if err := os.WriteFile(src, data, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		c      Compress
		ext    string
		reader func(io.Reader) (io.Reader, error)
	}{
		{name: "zstd", c: Zstd, ext: ".zst", reader: func(r io.Reader) (io.Reader, error) { return zstd.NewReader(r) }},
		{name: "gzip", c: Gzip, ext: ".gz", reader: func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.c.Ext(); got != tt.ext {
				t.Errorf("Ext() = %q, want %q", got, tt.ext)
			}
			dst := filepath.Join(dir, "out"+tt.ext)
			if err := compressFile(src, dst, tt.c); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(dst)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			r, err := tt.reader(f)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(r)
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("decompressed %d bytes (err %v), want the %d bytes written", len(got), err, len(data))
			}
		})
	}
}
