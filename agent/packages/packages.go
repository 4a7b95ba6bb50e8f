// Package packages puts the Debian packages an image was built with
// (`drift-image --packages`, `make image PACKAGES=...`) into a node's root
// file system at boot. The image carries them as one compressed read-only
// squashfs file inside the initramfs (ImagePath), so every way of booting
// (ISO, USB stick, PXE, kernel and initramfs) brings the same files and a
// node pays their compressed size in memory, not their unpacked size.
//
// driftd's boot sequence (agent/daemon) calls Mounter.Mount first of all:
// it attaches the squashfs to a loop device, mounts it read-only under
// StateDir, and lays each of its top-level directories (usr, etc, lib...)
// over the same directory of the root with overlayfs, the squashfs's files
// above the image's own. Every overlaid directory stays writable, as the
// initramfs root was: what is written goes to a tmpfs. So
// /usr/bin/python3, its libraries and its data are where Debian puts
// them, identical on every node, and a job that migrates finds on the
// target the very files it had open.
package packages

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// ImagePath is where the image keeps the squashfs of its Debian packages.
// drift-image writes it there; a node without it has no packages.
const ImagePath = "/usr/lib/drift/packages.squashfs"

// StateDir holds, on a tmpfs, the squashfs's mount point (image/) and the
// writable layers of the overlays (rw/DIR/upper, rw/DIR/work).
const StateDir = "/run/drift/packages"

// Source is the device name the overlays show in /proc/mounts.
const Source = "drift-packages"

// ErrNoImage reports that the image was built without Debian packages.
var ErrNoImage = errors.New("this image has no Debian packages")

// skipDirs are top-level directories never laid over: the kernel's and
// the boot's own file systems.
var skipDirs = []string{"dev", "proc", "sys", "run", "tmp"}

// Mounter mounts an image's packages. The zero value mounts ImagePath
// over / with the modules already loaded.
type Mounter struct {
	Image   string                    // the squashfs; "": ImagePath
	Root    string                    // the root file system to lay its directories over; "": "/"
	State   string                    // "": StateDir (on Root)
	Modules []string                  // kernel modules to load first (loop, squashfs, overlay)
	Load    func(module string) error // loads a module with its dependencies; nil: none is loaded
	Logger  *slog.Logger              // nil: slog.Default()
}

// Mounted says what Mount laid over the root.
type Mounted struct {
	Image   string   // the squashfs
	Device  string   // the loop device it is attached to
	Dirs    []string // the directories laid over, absolute paths on the root, sorted
	Skipped []string // top-level directories of the squashfs that were not, with why
	// Again reports that the packages were mounted already, by an
	// earlier run of driftd: Mount found them and changed nothing.
	Again bool
}

// Covers reports whether path is inside one of the overlaid directories.
func (m *Mounted) Covers(path string) bool {
	return slices.ContainsFunc(m.Dirs, func(d string) bool {
		return path == d || strings.HasPrefix(path, d+"/")
	})
}

func (m *Mounter) image() string { return cmp.Or(m.Image, ImagePath) }
func (m *Mounter) root() string  { return cmp.Or(m.Root, "/") }
func (m *Mounter) state() string {
	if m.State != "" {
		return m.State
	}
	return filepath.Join(m.root(), StateDir)
}
func (m *Mounter) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

// onRoot returns the absolute path on the host of dir ("/usr") on Root.
func (m *Mounter) onRoot(dir string) string { return filepath.Join(m.root(), dir) }

// Mount lays the image's packages over the root. It returns ErrNoImage
// when the image has none, and what it found when they are mounted
// already. On failure it undoes what it did, so the node runs on without
// the packages, and the error says what to check.
func (m *Mounter) Mount() (*Mounted, error) {
	img := m.image()
	if _, err := os.Stat(img); errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoImage
	} else if err != nil {
		return nil, fmt.Errorf("packages: %w", err)
	}
	if got, ok := m.mounted(); ok {
		return got, nil
	}
	for _, mod := range m.Modules {
		if m.Load == nil {
			break
		}
		if err := m.Load(mod); err != nil {
			// Built in, perhaps: the mount below says if it is missing.
			m.log().Warn("packages: load module", "module", mod, "err", err)
		}
	}
	var undo []func()
	rollback := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	got, err := m.mount(img, &undo)
	if err != nil {
		rollback()
		return nil, err
	}
	return got, nil
}

// mount does the work of Mount, appending to undo how to take back each
// step.
func (m *Mounter) mount(img string, undo *[]func()) (*Mounted, error) {
	state := m.state()
	imageDir := filepath.Join(state, "image")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, fmt.Errorf("packages: %w", err)
	}
	if err := unix.Mount("tmpfs", state, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return nil, fmt.Errorf("packages: mount a tmpfs on %s: %w", state, err)
	}
	*undo = append(*undo, func() { unmount(state) })
	if err := os.MkdirAll(imageDir, 0o755); err != nil {
		return nil, fmt.Errorf("packages: %w", err)
	}
	dev, release, err := attachLoop(img)
	if err != nil {
		return nil, fmt.Errorf("packages: %w (is the loop module in the image? lsmod shows what is loaded)", err)
	}
	err = unix.Mount(dev, imageDir, "squashfs", unix.MS_RDONLY|unix.MS_NODEV, "")
	release() // the mount holds the device now; without one it detaches
	if err != nil {
		return nil, fmt.Errorf("packages: mount %s (%s) on %s: %w (is the squashfs module in the image, and %s intact? compare its size with the image's)", img, dev, imageDir, err, img)
	}
	*undo = append(*undo, func() { unmount(imageDir) })

	got := &Mounted{Image: img, Device: dev}
	entries, err := os.ReadDir(imageDir)
	if err != nil {
		return nil, fmt.Errorf("packages: read %s: %w", img, err)
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case !e.IsDir():
			got.Skipped = append(got.Skipped, "/"+name+" (not a directory)")
			continue
		case slices.Contains(skipDirs, name):
			got.Skipped = append(got.Skipped, "/"+name+" (the system's own)")
			continue
		}
		target := m.onRoot(name)
		fi, err := os.Lstat(target)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := os.Mkdir(target, 0o755); err != nil {
				return nil, fmt.Errorf("packages: create /%s: %w", name, err)
			}
		case err != nil:
			return nil, fmt.Errorf("packages: %w", err)
		case !fi.IsDir():
			got.Skipped = append(got.Skipped, "/"+name+" (not a directory on the root)")
			continue
		}
		upper := filepath.Join(state, "rw", name, "upper")
		work := filepath.Join(state, "rw", name, "work")
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, fmt.Errorf("packages: %w", err)
			}
		}
		opts, err := overlayOptions([]string{filepath.Join(imageDir, name), target}, upper, work)
		if err != nil {
			return nil, fmt.Errorf("packages: /%s: %w", name, err)
		}
		if err := unix.Mount(Source, target, "overlay", 0, opts); err != nil {
			return nil, fmt.Errorf("packages: lay %s over /%s (overlay %s): %w (is the overlay module in the image?)", filepath.Join(img, name), name, opts, err)
		}
		*undo = append(*undo, func() { unmount(target) })
		got.Dirs = append(got.Dirs, "/"+name)
	}
	if len(got.Skipped) > 0 {
		m.log().Warn("packages: directories not laid over the root", "dirs", strings.Join(got.Skipped, ", "))
	}
	return got, nil
}

// overlayOptions returns the mount data of an overlay with lower layers
// lowers (the first on top) and a writable upper layer.
func overlayOptions(lowers []string, upper, work string) (string, error) {
	for _, p := range append(slices.Clone(lowers), upper, work) {
		if strings.ContainsAny(p, ",:\\") {
			return "", fmt.Errorf("path %q holds a character overlayfs options cannot carry (, : or \\)", p)
		}
	}
	return "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work, nil
}

// mounted reports the packages mounted earlier, from /proc/self/mounts.
func (m *Mounter) mounted() (*Mounted, bool) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return nil, false
	}
	defer f.Close()
	return parseMounts(f, m.image(), filepath.Join(m.state(), "image"), m.root())
}

// parseMounts finds in a /proc/mounts table the squashfs mounted at
// imageDir and the overlays of Source on the directories of root.
func parseMounts(r io.Reader, img, imageDir, root string) (*Mounted, bool) {
	got := &Mounted{Image: img, Again: true}
	found := false
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 {
			continue
		}
		dev, dir, fstype := f[0], unescapeMount(f[1]), f[2]
		switch {
		case dir == imageDir && fstype == "squashfs":
			got.Device, found = dev, true
		case dev == Source && fstype == "overlay":
			rel, err := filepath.Rel(root, dir)
			if err == nil && !strings.HasPrefix(rel, "..") && !strings.Contains(rel, "/") && rel != "." {
				got.Dirs = append(got.Dirs, "/"+rel)
			}
		}
	}
	slices.Sort(got.Dirs)
	return got, found
}

// unescapeMount undoes the octal escapes of /proc/mounts (\040 for a
// space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v byte
			ok := true
			for _, c := range s[i+1 : i+4] {
				if c < '0' || c > '7' {
					ok = false
					break
				}
				v = v*8 + byte(c-'0')
			}
			if ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// attachLoop attaches the file img, read-only, to a free loop device and
// returns the device's path. The device detaches itself once nothing
// holds it (LO_FLAGS_AUTOCLEAR): call release once the file system on it
// is mounted, or to give it up.
func attachLoop(img string) (dev string, release func(), err error) {
	file, err := unix.Open(img, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open %s: %w", img, err)
	}
	defer unix.Close(file)
	ctl, err := unix.Open("/dev/loop-control", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", nil, fmt.Errorf("open /dev/loop-control: %w", err)
	}
	defer unix.Close(ctl)
	// Another program may take the free device between asking and
	// attaching: then ask again.
	for try := 0; ; try++ {
		n, err := unix.IoctlRetInt(ctl, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("find a free loop device: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		loop, err := attach(dev, n, file, img)
		if errors.Is(err, unix.EBUSY) && try < 10 {
			continue
		}
		if err != nil {
			return "", nil, err
		}
		return dev, func() { unix.Close(loop) }, nil
	}
}

// attach attaches the open file to the loop device dev (number n) and
// returns the device, open.
func attach(dev string, n, file int, img string) (int, error) {
	var loop int
	var err error
	for wait := 0; ; wait++ {
		loop, err = unix.Open(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.ENOENT) || wait == 20 {
			break
		}
		// devtmpfs creates the node as the device appears: give it a
		// moment, then make it ourselves.
		if wait == 10 {
			unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n))))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", dev, err)
	}
	if err := unix.IoctlSetInt(loop, unix.LOOP_SET_FD, file); err != nil {
		unix.Close(loop)
		return -1, fmt.Errorf("attach %s to %s: %w", img, dev, err)
	}
	info := unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR}
	copy(info.File_name[:unix.LO_NAME_SIZE-1], img)
	if err := unix.IoctlLoopSetStatus64(loop, &info); err != nil {
		unix.IoctlSetInt(loop, unix.LOOP_CLR_FD, 0)
		unix.Close(loop)
		return -1, fmt.Errorf("set up %s for %s: %w", dev, img, err)
	}
	return loop, nil
}

// unmount takes a mount away, lazily if it is busy.
func unmount(dir string) {
	if err := unix.Unmount(dir, 0); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
	}
}
