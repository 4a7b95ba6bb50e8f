package imagebuild

import (
	"testing"

	"github.com/driftcluster/drift/initramfs"
	"github.com/google/go-cmp/cmp"
)

func TestApplets(t *testing.T) {
	list := "[\n[[\nash\nawk\nbusybox\ncat\ninit\nmodprobe\npoweroff\nsed\nsh\nsleep\nudhcpc\nawk\n"
	want := []string{"[", "[[", "ash", "awk", "cat", "sed", "sleep"}
	if diff := cmp.Diff(want, applets(list)); diff != "" {
		t.Errorf("applets (-want +got):\n%s", diff)
	}
	sh := shell{Binary: "/staging/shell/bin/busybox", Applets: []string{"awk", "cat"}, Libs: []string{"lib/x86_64-linux-gnu/libresolv.so.2"}, sysroot: "/cache/criu"}
	files, links := sh.files()
	wantLinks := map[string]string{"bin/sh": "/bin/busybox", "usr/bin/awk": "/bin/busybox", "usr/bin/cat": "/bin/busybox"}
	if diff := cmp.Diff(wantLinks, links); diff != "" {
		t.Errorf("shell links (-want +got):\n%s", diff)
	}
	wantFiles := []initramfs.File{
		{Src: "/staging/shell/bin/busybox", Dst: "bin/busybox"},
		{Src: "/cache/criu/lib/x86_64-linux-gnu/libresolv.so.2", Dst: "lib/x86_64-linux-gnu/libresolv.so.2"},
	}
	if diff := cmp.Diff(wantFiles, files); diff != "" {
		t.Errorf("shell files (-want +got):\n%s", diff)
	}
}
