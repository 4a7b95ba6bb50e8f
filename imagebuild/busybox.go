package imagebuild

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/driftcluster/drift/imagebuild/elfdeps"
	"github.com/driftcluster/drift/initramfs"
)

// The shell of every node: Debian's busybox, the build that looks
// commands up in PATH. (busybox-static is built as a "standalone shell":
// its ash runs its own applet for any name it has before it looks at
// PATH, so a Debian package could never replace an applet in a shell
// script, gawk's /usr/bin/awk included, and `reboot` in a script would
// signal the node's init, drift-init.) It links against libc6, which the image carries
// for criu already.
const (
	busyboxPackage = "busybox"
	busyboxBinary  = "bin/busybox" // where the package puts it, and where the image does
	shellPath      = "bin/sh"      // a link to busyboxBinary: busybox runs as ash
	appletDir      = "usr/bin"     // the applets' links: before /bin and /bbin on a job's PATH
)

// busyboxSkip are the applets the image does not link, and why: what
// drift-init (the node's init), driftd and u-root's tools already do for the node, and
// what assumes a distribution's logins, services or package manager.
// Everything else busybox offers goes into /usr/bin, where a job's PATH
// (agent/jobs.DefaultPath) and the console's find it before u-root's Go
// tools in /bbin: a shell script that runs only C programs can migrate
// (u-root's tools open /dev/kmsg at start, which pins a job to its node).
var busyboxSkip = map[string]string{
	"sh": "it is /bin/sh",

	"init":        pid1,
	"linuxrc":     pid1,
	"halt":        power,
	"poweroff":    power,
	"reboot":      power,
	"switch_root": "the root never changes",
	"pivot_root":  "the root never changes",
	"run-init":    "the root never changes",

	"getty":   noLogins,
	"login":   noLogins,
	"sulogin": noLogins,
	"su":      noLogins,
	"passwd":  noLogins,

	"udhcpc":            "driftd configures the network",
	"ifup":              "driftd configures the network",
	"ifdown":            "driftd configures the network",
	"udhcpd":            "driftd serves DHCP on the head",
	"dumpleases":        "driftd serves DHCP on the head",
	"mdev":              "the kernel's devtmpfs makes the devices",
	"uevent":            "the kernel's devtmpfs makes the devices",
	"syslogd":           "driftd keeps the node's logs",
	"klogd":             "driftd keeps the node's logs",
	"logread":           "driftd keeps the node's logs",
	"crond":             noServices,
	"crontab":           noServices,
	"acpid":             noServices,
	"start-stop-daemon": noServices,
	"svc":               noServices,
	"svok":              noServices,
	"watchdog":          "a watchdog that stops being fed reboots the node",

	"insmod":   modTools,
	"rmmod":    modTools,
	"lsmod":    modTools,
	"modprobe": modTools,
	"modinfo":  modTools,
	"depmod":   "busybox's would rewrite the image's modules.dep",

	"dpkg":     noInstall,
	"dpkg-deb": noInstall,
	"rpm":      noInstall,
	"rpm2cpio": noInstall,
}

// Reasons shared by several of busyboxSkip's applets.
const (
	pid1       = "drift-init is PID 1"
	power      = "busybox's signal a busybox init; u-root's poweroff and shutdown stay"
	noLogins   = "no logins: the console is u-root's shell"
	noServices = "no services besides driftd"
	modTools   = "driftd loads modules; u-root's insmod, rmmod and lsmod stay"
	noInstall  = "packages come with the image (drift-image --packages)"
)

// shell is Debian's busybox as the image carries it.
type shell struct {
	Binary  string   // the program, staged
	Libs    []string // libraries it loads that criu does not, relative to the criu sysroot
	Needs   []string // every file it loads, criu's included, relative to the criu sysroot
	Version string   // of the busybox package
	Applets []string // linked in /usr/bin, sorted
	Cached  bool
	sysroot string // the criu sysroot, where Libs are
}

// busybox fetches Debian's busybox, finds the libraries it loads in the
// libc6 that criu's sysroot holds, and lists the applets to link.
func (b *builder) busybox(ctx context.Context, criu criuRoot) (shell, error) {
	info, err := b.deb.show(ctx, busyboxPackage)
	if err != nil {
		return shell{}, err
	}
	dir, cached, err := b.deb.fetch(ctx, info)
	if err != nil {
		return shell{}, err
	}
	sh := shell{Version: info.Version, Cached: cached, sysroot: criu.Sysroot}
	// Criu's sysroot with busybox in it, hard links: what busybox loads
	// must resolve there, as on a node.
	root := filepath.Join(b.staging, "shell")
	if err := linkTree(criu.Sysroot, root); err != nil {
		return shell{}, fmt.Errorf("busybox: %w", err)
	}
	// Also the name the initramfs takes it from: the cache's directory
	// names carry the version, whose epoch ("1:") mkuimage would read
	// as a separator.
	sh.Binary = filepath.Join(root, busyboxBinary)
	if err := os.MkdirAll(filepath.Dir(sh.Binary), 0o755); err != nil {
		return shell{}, fmt.Errorf("busybox: %w", err)
	}
	if err := placeFile(filepath.Join(dir, busyboxBinary), sh.Binary); err != nil {
		return shell{}, fmt.Errorf("busybox: %w", err)
	}
	files, err := elfdeps.Closure(root, busyboxBinary)
	var missing *elfdeps.MissingError
	if errors.As(err, &missing) {
		return shell{}, fmt.Errorf("busybox %s: %w: the libc6 that criu brings lacks them", info.Version, err)
	} else if err != nil {
		return shell{}, fmt.Errorf("busybox: %w", err)
	}
	sh.Needs = files
	for _, f := range files {
		if f != busyboxBinary && !slices.Contains(criu.Files, f) {
			sh.Libs = append(sh.Libs, f)
		}
	}
	// The build host runs it through the sysroot's ld.so, whatever its
	// own libc, to say what applets it holds.
	ldso := filepath.Join(root, "lib64/ld-linux-x86-64.so.2")
	libs := filepath.Join(root, "lib/x86_64-linux-gnu")
	out, err := run(ctx, "", ldso, "--library-path", libs, sh.Binary, "--list")
	if err != nil {
		return shell{}, fmt.Errorf("list busybox's applets: %w", err)
	}
	sh.Applets = applets(string(out))
	how := "downloaded"
	if cached {
		how = "cached"
	}
	extra := ""
	if len(sh.Libs) > 0 {
		var names []string
		for _, l := range sh.Libs {
			names = append(names, filepath.Base(l))
		}
		extra = ", with " + strings.Join(names, " ") + " from libc6"
	}
	b.progress("shell: /bin/sh is busybox ash (%s %s, %s, %s%s); %d applets in /%s, ahead of u-root's /bbin; the console keeps gosh",
		busyboxPackage, sh.Version, mib(fileSize(sh.Binary)), how, extra, len(sh.Applets), appletDir)
	return sh, nil
}

// applets returns the names in `busybox --list` output to link in
// /usr/bin: all but busyboxSkip and busybox itself, sorted.
func applets(list string) []string {
	var out []string
	for _, a := range strings.Fields(list) {
		if _, skip := busyboxSkip[a]; skip || a == "busybox" || strings.Contains(a, "/") {
			continue
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// files returns what the shell puts in the initramfs: the program, the
// libraries it loads that criu does not, and links to it as /bin/sh and
// as each applet.
func (sh shell) files() ([]initramfs.File, map[string]string) {
	links := map[string]string{shellPath: "/" + busyboxBinary}
	for _, a := range sh.Applets {
		links[appletDir+"/"+a] = "/" + busyboxBinary
	}
	files := []initramfs.File{{Src: sh.Binary, Dst: busyboxBinary}}
	for _, l := range sh.Libs {
		files = append(files, initramfs.File{Src: filepath.Join(sh.sysroot, l), Dst: l})
	}
	return files, links
}
