package imagebuild

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestPartSizes(t *testing.T) {
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	recs := []cpio.Record{
		cpio.Directory("bin", 0o755),
		cpio.StaticFile("bin/driftd", "0123456789", 0o755),
		cpio.StaticFile("bbin/bb", "abcd", 0o755),
		cpio.StaticFile("lib/modules/6.1/kernel/e1000.ko", "xyz", 0o644),
		cpio.StaticFile("usr/sbin/criu", "cc", 0o755),
		cpio.Symlink("bin/sh", "/bin/busybox"),
		cpio.StaticFile("etc/drift/version", "v\n", 0o644),
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil)
	path := filepath.Join(t.TempDir(), "initramfs.cpio.zst")
	if err := os.WriteFile(path, enc.EncodeAll(buf.Bytes(), nil), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := PartSizes(path, partClassifier(map[string]string{
		"bin/driftd": PartGo, "usr/sbin/criu": PartCRIU, "bin/sh": PartShell,
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := []Part{
		{Name: PartGo, Files: 1, Bytes: 10},
		{Name: PartUroot, Files: 1, Bytes: 4},
		{Name: PartCRIU, Files: 1, Bytes: 2},
		{Name: PartModules, Files: 3, Bytes: 3}, // two directories and the module
		{Name: PartShell, Files: 1, Bytes: int64(len("/bin/busybox"))},
		{Name: PartOther, Files: 6, Bytes: 2}, // bin, etc, etc/drift, lib..., the version file
	}
	// The directories WriteRecordsAndDirs adds vary; compare what is ours.
	opts := []cmp.Option{cmpopts.IgnoreFields(Part{}, "Compressed")}
	if diff := cmp.Diff(want[:5], got[:5], opts...); diff != "" {
		t.Errorf("PartSizes mismatch (-want +got):\n%s", diff)
	}
	if last := got[len(got)-1]; last.Name != PartOther || last.Bytes != 2 {
		t.Errorf("PartSizes last part = %+v, want %s holding 2 bytes", last, PartOther)
	}
	for _, p := range got {
		if p.Compressed == 0 && p.Bytes > 0 {
			t.Errorf("part %s: Compressed = 0 for %d bytes", p.Name, p.Bytes)
		}
	}
	if _, err := PartSizes(filepath.Join(t.TempDir(), "none.zst"), partClassifier(nil)); err == nil {
		t.Error("PartSizes of a missing file: no error")
	}
}
