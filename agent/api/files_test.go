package api

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSharedPath(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr error
	}{
		{"", ".", nil},
		{".", ".", nil},
		{"/", "", ErrLeavesShared},
		{"work", "work", nil},
		{"work/", "work", nil},
		{"work/sim/", "work/sim", nil},
		{"./work//sim", "work/sim", nil},
		{"work/../inputs", "inputs", nil},
		{"work/..", ".", nil},
		{"..", "", ErrLeavesShared},
		{"../x", "", ErrLeavesShared},
		{"work/../../x", "", ErrLeavesShared},
		{"/cluster", ".", nil},
		{"/cluster/", ".", nil},
		{"/cluster/work/x", "work/x", nil},
		{"/cluster/../etc", "", ErrLeavesShared},
		{"/clusterfoo", "", ErrLeavesShared},
		{"/etc/passwd", "", ErrLeavesShared},
	}
	for _, tt := range tests {
		got, err := SharedPath(tt.in)
		if got != tt.want || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("SharedPath(%q) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestCheckLink(t *testing.T) {
	tests := []struct {
		name    string
		shared  string // "": a local tree
		rel     string
		target  string
		wantErr error
	}{
		{"sibling", "work/sim", "lib", "data", nil},
		{"inside the tree", "work/sim", "bin/run", "../lib/run", nil},
		{"out of the tree, inside /cluster", "work/sim", "inputs", "../inputs", nil},
		{"to /cluster itself", "work/sim", "top", "../..", nil},
		{"out of /cluster", "work/sim", "up", "../../..", ErrLeavesShared},
		{"out of /cluster from deeper", "work/sim", "a/b/up", "../../../../../etc", ErrLeavesShared},
		{"out at the root", ".", "x", "../etc", ErrLeavesShared},
		{"absolute", "work/sim", "lib", "/usr/lib", ErrLeavesShared},
		{"absolute into /cluster", "work/sim", "lib", "/cluster/work/lib", ErrLeavesShared},
		{"empty", "work/sim", "x", "", ErrBadArchive},
		{"local relative out of the tree", "", "x", "../../../y", nil},
		{"local absolute", "", "x", "/etc/passwd", ErrLeavesShared},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Tree{Name: "sim", Shared: tt.shared}.checkLink(tt.rel, tt.target)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("checkLink(%q -> %q) in %q = %v, want %v", tt.rel, tt.target, tt.shared, err, tt.wantErr)
			}
		})
	}
}

// file is one entry of a test tree.
type file struct {
	Mode  fs.FileMode // permission bits; with fs.ModeDir or fs.ModeSymlink for those
	Data  string      // a file's contents or a symlink's target
	MTime time.Time   // files and directories
}

var testTime = time.Date(2026, 3, 4, 5, 6, 7, 890000000, time.UTC)

// writeTree makes the tree files (paths relative to dir, parents first).
func writeTree(t *testing.T, dir string, files map[string]file) {
	t.Helper()
	for _, name := range sortedKeys(files) {
		f := files[name]
		p := filepath.Join(dir, name)
		switch {
		case f.Mode&fs.ModeDir != 0:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		case f.Mode&fs.ModeSymlink != 0:
			if err := os.Symlink(f.Data, p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(f.Data), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	// Modes and times last, deepest first.
	keys := sortedKeys(files)
	for i := len(keys) - 1; i >= 0; i-- {
		f, p := files[keys[i]], filepath.Join(dir, keys[i])
		if f.Mode&fs.ModeSymlink != 0 {
			continue
		}
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.MTime, f.MTime); err != nil {
			t.Fatal(err)
		}
	}
}

// readTree describes the tree at dir as writeTree takes it.
func readTree(t *testing.T, dir string) map[string]file {
	t.Helper()
	out := map[string]file{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f := file{Mode: fi.Mode() & (fs.ModeDir | fs.ModeSymlink | fs.ModePerm)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			f.Data, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			f.Data = string(b)
			f.MTime = fi.ModTime().UTC()
		default:
			f.MTime = fi.ModTime().UTC()
		}
		out[filepath.ToSlash(rel)] = f
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sortedKeys lists m's names in lexical order: a directory before what
// it holds.
func sortedKeys(m map[string]file) []string {
	return slices.Sorted(maps.Keys(m))
}

func openRoot(t *testing.T, dir string) *os.Root {
	t.Helper()
	r, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestTreeRoundTrip sends a tree and receives it elsewhere: same bytes,
// modes, times and symlinks; nothing left under a temporary name.
func TestTreeRoundTrip(t *testing.T) {
	src, dst := t.TempDir(), t.TempDir()
	tree := map[string]file{
		"sim":              {Mode: fs.ModeDir | 0o750, MTime: testTime},
		"sim/run":          {Mode: 0o755, Data: "#!/bin/sh\necho hi\n", MTime: testTime},
		"sim/data":         {Mode: fs.ModeDir | 0o555, MTime: testTime.Add(time.Hour)},
		"sim/data/in.txt":  {Mode: 0o444, Data: strings.Repeat("x", 3*copyChunk+7), MTime: testTime},
		"sim/data/empty":   {Mode: 0o600, MTime: testTime},
		"sim/latest":       {Mode: fs.ModeSymlink | 0o777, Data: "data/in.txt"},
		"sim/data/up":      {Mode: fs.ModeSymlink | 0o777, Data: "../run"},
		"sim/empty-dir":    {Mode: fs.ModeDir | 0o700, MTime: testTime},
		"sim/data/a b \"c": {Mode: 0o640, Data: "odd name", MTime: testTime},
	}
	writeTree(t, src, tree)
	var buf bytes.Buffer
	var sentBytes int64
	sent, err := Tree{Root: openRoot(t, src), Name: "sim", Shared: "work/sim", Progress: func(n int64) { sentBytes += n }}.Send(context.Background(), &buf)
	if err != nil {
		t.Fatalf("Send: %v", err)
	}
	want := TreeSize{Files: 4, Dirs: 3, Links: 2, Bytes: int64(3*copyChunk + 7 + len("#!/bin/sh\necho hi\n") + len("odd name"))}
	if sent != want || sentBytes != want.Bytes {
		t.Errorf("Send = %+v (progress %d), want %+v", sent, sentBytes, want)
	}
	scanned, err := Tree{Root: openRoot(t, src), Name: "sim", Shared: "work/sim"}.Scan(context.Background())
	if err != nil || scanned != want {
		t.Errorf("Scan = %+v, %v; want %+v", scanned, err, want)
	}
	got, err := Tree{Root: openRoot(t, dst), Name: "copy", Shared: "work/copy"}.Receive(context.Background(), &buf)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	if got != want {
		t.Errorf("Receive = %+v, want %+v", got, want)
	}
	wantTree := map[string]file{}
	for k, v := range tree {
		wantTree["copy"+strings.TrimPrefix(k, "sim")] = v
	}
	if diff := cmp.Diff(wantTree, readTree(t, dst)); diff != "" {
		t.Errorf("received tree differs (-want +got):\n%s", diff)
	}
}

// tarOf writes entries as a tar stream.
func tarOf(t *testing.T, hs ...*tar.Header) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range hs {
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = 4
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte("data")[:h.Size])
		}
	}
	tw.Close()
	return &buf
}

func dirH(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755}
}
func fileH(name string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644}
}
func linkH(name, target string) *tar.Header {
	return &tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target}
}

// TestReceiveRefuses feeds Receive streams it must refuse; none may
// write outside its root or leave a temporary file.
func TestReceiveRefuses(t *testing.T) {
	tests := []struct {
		name    string
		entries []*tar.Header
		wantErr error
	}{
		{"absolute name", []*tar.Header{dirH("."), fileH("/etc/x")}, ErrBadArchive},
		{"dot-dot name", []*tar.Header{dirH("."), fileH("../x")}, ErrBadArchive},
		{"dot-dot inside", []*tar.Header{dirH("."), dirH("a"), fileH("a/../../x")}, ErrBadArchive},
		{"unclean name", []*tar.Header{dirH("."), dirH("a"), fileH("a//b")}, ErrBadArchive},
		{"first entry not the item", []*tar.Header{fileH("x")}, ErrBadArchive},
		{"entry before its directory", []*tar.Header{dirH("."), fileH("a/b")}, ErrBadArchive},
		{"entry after a file item", []*tar.Header{fileH("."), fileH("b")}, ErrBadArchive},
		{"item twice", []*tar.Header{dirH("."), dirH(".")}, ErrBadArchive},
		{"item a symlink", []*tar.Header{linkH(".", "x")}, ErrBadArchive},
		{"hard link", []*tar.Header{dirH("."), fileH("a"), {Name: "b", Typeflag: tar.TypeLink, Linkname: "a"}}, ErrUnsupportedFile},
		{"device", []*tar.Header{dirH("."), {Name: "null", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3}}, ErrUnsupportedFile},
		{"fifo", []*tar.Header{dirH("."), {Name: "p", Typeflag: tar.TypeFifo}}, ErrUnsupportedFile},
		{"absolute symlink", []*tar.Header{dirH("."), linkH("l", "/etc")}, ErrLeavesShared},
		{"escaping symlink", []*tar.Header{dirH("."), linkH("l", "../../../etc")}, ErrLeavesShared},
		{"write through an escaping symlink", []*tar.Header{dirH("."), linkH("l", "../.."), fileH("l/x")}, ErrBadArchive},
		{"empty stream", nil, ErrBadArchive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			shared := filepath.Join(top, "cluster")
			if err := os.MkdirAll(filepath.Join(shared, "work"), 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := Tree{Root: openRoot(t, shared), Name: "work/item", Shared: "work/item"}.Receive(context.Background(), tarOf(t, tt.entries...))
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("Receive = %v, want %v", err, tt.wantErr)
			}
			for p := range readTree(t, top) {
				if IsPartial(filepath.Base(p)) || !strings.HasPrefix(p, "cluster") {
					t.Errorf("left %s behind", p)
				}
			}
		})
	}
}

// TestReceiveCut cuts a stream in the middle of a file: the file is not
// there under its name, the one before it is, and no temporary is left.
func TestReceiveCut(t *testing.T) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(dirH("."))
	tw.WriteHeader(&tar.Header{Name: "first", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
	tw.Write([]byte("hello"))
	tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 20})
	tw.Write(make([]byte, 1000))
	tw.Flush()
	dir := t.TempDir()
	_, err := Tree{Root: openRoot(t, dir), Name: "item", Shared: "item"}.Receive(context.Background(), io.LimitReader(&buf, int64(buf.Len())))
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("Receive of a cut stream = %v, want io.ErrUnexpectedEOF", err)
	}
	got := readTree(t, dir)
	if _, ok := got["item/big"]; ok {
		t.Errorf("the cut file is there under its name")
	}
	if got["item/first"].Data != "hello" {
		t.Errorf("the file before the cut is %+v, want it complete", got["item/first"])
	}
	for p := range got {
		if IsPartial(filepath.Base(p)) {
			t.Errorf("left %s behind", p)
		}
	}
}

// TestSendRefuses walks trees that cannot be copied.
func TestSendRefuses(t *testing.T) {
	tests := []struct {
		name    string
		shared  string
		files   map[string]file
		wantErr error
	}{
		{"absolute symlink", "work/sim", map[string]file{"sim": {Mode: fs.ModeDir | 0o755}, "sim/l": {Mode: fs.ModeSymlink, Data: "/usr/lib"}}, ErrLeavesShared},
		{"escaping symlink", "work/sim", map[string]file{"sim": {Mode: fs.ModeDir | 0o755}, "sim/l": {Mode: fs.ModeSymlink, Data: "../../../x"}}, ErrLeavesShared},
		{"symlink fine on a local disk only", "", map[string]file{"sim": {Mode: fs.ModeDir | 0o755}, "sim/l": {Mode: fs.ModeSymlink, Data: "../../../x"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, tt.files)
			tree := Tree{Root: openRoot(t, dir), Name: "sim", Shared: tt.shared}
			if _, err := tree.Scan(context.Background()); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Scan = %v, want %v", err, tt.wantErr)
			}
			if _, err := tree.Send(context.Background(), io.Discard); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("Send = %v, want %v", err, tt.wantErr)
			}
		})
	}
	t.Run("named pipe", func(t *testing.T) {
		dir := t.TempDir()
		os.Mkdir(filepath.Join(dir, "sim"), 0o755)
		if err := syscall.Mkfifo(filepath.Join(dir, "sim", "p"), 0o600); err != nil {
			t.Skip("mkfifo:", err)
		}
		_, err := Tree{Root: openRoot(t, dir), Name: "sim", Shared: "sim"}.Scan(context.Background())
		if !errors.Is(err, ErrUnsupportedFile) || !strings.Contains(err.Error(), "sim/p: a named pipe") {
			t.Errorf("Scan of a tree with a pipe = %v, want ErrUnsupportedFile naming sim/p", err)
		}
	})
}
