package packages

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseMounts(t *testing.T) {
	const table = `rootfs / rootfs rw,size=233704k,nr_inodes=58426 0 0
tmpfs /run/drift/packages tmpfs rw,nosuid,nodev,relatime,mode=755 0 0
/dev/loop0 /run/drift/packages/image squashfs ro,nodev,relatime,errors=continue 0 0
drift-packages /etc overlay rw,relatime,lowerdir=/run/drift/packages/image/etc:/etc,upperdir=/run/drift/packages/rw/etc/upper,workdir=/run/drift/packages/rw/etc/work 0 0
drift-packages /usr overlay rw,relatime,lowerdir=/run/drift/packages/image/usr:/usr 0 0
overlay /var/lib/docker/x overlay rw 0 0
drift-packages /lib overlay rw 0 0
`
	tests := []struct {
		name     string
		table    string
		imageDir string
		want     *Mounted
		wantOK   bool
	}{
		{
			name:     "mounted",
			table:    table,
			imageDir: "/run/drift/packages/image",
			want:     &Mounted{Image: ImagePath, Device: "/dev/loop0", Dirs: []string{"/etc", "/lib", "/usr"}, Again: true},
			wantOK:   true,
		},
		{
			name:     "not mounted",
			table:    "rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n",
			imageDir: "/run/drift/packages/image",
			want:     &Mounted{Image: ImagePath, Again: true},
		},
		{
			name:     "escaped mount point",
			table:    "/dev/loop3 /tmp/my\\040state/image squashfs ro 0 0\n",
			imageDir: "/tmp/my state/image",
			want:     &Mounted{Image: ImagePath, Device: "/dev/loop3", Again: true},
			wantOK:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseMounts(strings.NewReader(tt.table), ImagePath, tt.imageDir, "/")
			if ok != tt.wantOK {
				t.Errorf("parseMounts found = %v, want %v", ok, tt.wantOK)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("parseMounts (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOverlayOptions(t *testing.T) {
	got, err := overlayOptions([]string{"/run/drift/packages/image/usr", "/usr"}, "/run/drift/packages/rw/usr/upper", "/run/drift/packages/rw/usr/work")
	want := "lowerdir=/run/drift/packages/image/usr:/usr,upperdir=/run/drift/packages/rw/usr/upper,workdir=/run/drift/packages/rw/usr/work"
	if err != nil || got != want {
		t.Errorf("overlayOptions = %q, %v, want %q", got, err, want)
	}
	if _, err := overlayOptions([]string{"/a:b"}, "/u", "/w"); err == nil {
		t.Error("overlayOptions accepted a lower directory with ':' in its path")
	}
}

func TestCovers(t *testing.T) {
	m := &Mounted{Dirs: []string{"/bin", "/usr"}}
	for path, want := range map[string]bool{
		"/bin/driftd": true, "/bin": true, "/usr/lib/drift/x": true,
		"/bbin/bb": false, "/binary": false, "/": false,
	} {
		if got := m.Covers(path); got != want {
			t.Errorf("Covers(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestMountNoImage(t *testing.T) {
	_, err := (&Mounter{Image: filepath.Join(t.TempDir(), "none.squashfs")}).Mount()
	if !errors.Is(err, ErrNoImage) {
		t.Errorf("Mount without an image = %v, want ErrNoImage", err)
	}
}

// TestMount builds a real squashfs and lays it over a root in a temporary
// directory with real loop, squashfs and overlay mounts. It needs root,
// mksquashfs (Debian's squashfs-tools) and a kernel with those file
// systems.
func TestMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	mksquashfs, err := exec.LookPath("mksquashfs")
	if err != nil {
		t.Skip("mksquashfs not found: install squashfs-tools to run this test")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices here: ", err)
	}
	dir := t.TempDir()
	write := func(p, body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The packages: a program in /usr/bin beside the image's own, a
	// config file, a directory the root lacks, a symlink, and a /proc
	// that must be left alone.
	tree := filepath.Join(dir, "tree")
	write(filepath.Join(tree, "usr/bin/python3.11"), "python")
	write(filepath.Join(tree, "etc/python3.11/sitecustomize.py"), "# site")
	write(filepath.Join(tree, "opt/tool/run"), "run")
	write(filepath.Join(tree, "proc/nope"), "nope")
	if err := os.Symlink("python3.11", filepath.Join(tree, "usr/bin/python3")); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "packages.squashfs")
	if out, err := exec.Command(mksquashfs, tree, img, "-noappend", "-all-root", "-quiet", "-no-progress").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	root := filepath.Join(dir, "root")
	write(filepath.Join(root, "usr/bin/criu"), "criu")
	write(filepath.Join(root, "etc/drift/version"), "v1")
	write(filepath.Join(root, "proc/keep"), "keep")

	m := &Mounter{Image: img, Root: root}
	got, err := m.Mount()
	if err != nil {
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENODEV) {
			t.Skipf("this kernel or container does not allow the mounts: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, d := range slices.Backward(got.Dirs) {
			unmount(filepath.Join(root, d))
		}
		unmount(filepath.Join(m.state(), "image"))
		unmount(m.state())
	})
	if diff := cmp.Diff([]string{"/etc", "/opt", "/usr"}, got.Dirs); diff != "" {
		t.Errorf("Mount().Dirs (-want +got):\n%s", diff)
	}
	if !strings.HasPrefix(got.Device, "/dev/loop") || got.Again {
		t.Errorf("Mount() = %+v, want a loop device, not again", got)
	}
	for p, want := range map[string]string{
		"usr/bin/python3":                 "python", // through the package's own symlink
		"usr/bin/criu":                    "criu",   // the image's file, still there
		"etc/python3.11/sitecustomize.py": "# site",
		"etc/drift/version":               "v1",
		"opt/tool/run":                    "run",
		"proc/keep":                       "keep",
	} {
		if b, err := os.ReadFile(filepath.Join(root, p)); string(b) != want {
			t.Errorf("/%s = %q, %v, want %q", p, b, err, want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "proc/nope")); err == nil {
		t.Error("/proc was laid over")
	}
	// Overlaid directories stay writable; the squashfs does not change.
	if err := os.WriteFile(filepath.Join(root, "etc/hostname"), []byte("drift-x\n"), 0o644); err != nil {
		t.Errorf("write to the overlaid /etc: %v", err)
	}
	if err := os.WriteFile(filepath.Join(root, "usr/bin/python3.11"), []byte("changed"), 0o755); err != nil {
		t.Errorf("write to a package file: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(m.state(), "image/usr/bin/python3.11")); string(b) != "python" {
		t.Errorf("the squashfs's python3.11 reads %q after a write through the overlay, want it unchanged", b)
	}

	again, err := m.Mount()
	if err != nil {
		t.Fatal(err)
	}
	want := &Mounted{Image: img, Device: got.Device, Dirs: got.Dirs, Again: true}
	if diff := cmp.Diff(want, again); diff != "" {
		t.Errorf("second Mount() (-want +got):\n%s", diff)
	}
}

// TestMountFailureUndoes checks that a squashfs that cannot be mounted
// leaves nothing mounted behind.
func TestMountFailureUndoes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting needs root")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("no loop devices here: ", err)
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "broken.squashfs")
	if err := os.WriteFile(img, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	m := &Mounter{Image: img, Root: filepath.Join(dir, "root")}
	_, err := m.Mount()
	if err == nil {
		t.Fatal("Mount of a file of zeros succeeded")
	}
	if errors.Is(err, unix.EPERM) {
		t.Skipf("this container does not allow mounts: %v", err)
	}
	if !strings.Contains(err.Error(), img) {
		t.Errorf("Mount error %q does not name the image", err)
	}
	mounts, _ := os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts left under %s after a failed Mount:\n%s", dir, mounts)
	}
}
