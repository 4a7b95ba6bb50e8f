package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	agentboot "github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/configs/boot"
	"github.com/driftcluster/drift/configs/modules"
	"github.com/driftcluster/drift/imagebuild/kmod"
	"github.com/driftcluster/drift/initramfs"
)

// menuTimeout is how long the boot menus wait before the default entry.
const menuTimeout = 3 * time.Second

// build runs the steps into the staging directory and returns the manifest
// of what it built there.
func (b *builder) build(ctx context.Context) (*Manifest, error) {
	if err := checkISOTools(); err != nil {
		return nil, err
	}
	if err := checkPXEFiles(); err != nil {
		return nil, err
	}
	if b.cfg.Kernel != "" {
		if _, err := bzImageVersion(b.cfg.Kernel); err != nil {
			return nil, fmt.Errorf("%w: give --kernel a bzImage such as /boot/vmlinuz-VERSION", err)
		}
	}
	key, err := b.key()
	if err != nil {
		return nil, err
	}
	k, err := b.kernel(ctx)
	if err != nil {
		return nil, err
	}
	modFiles, lateMods, err := b.modules(k)
	if err != nil {
		return nil, err
	}
	criu, err := b.criu(ctx)
	if err != nil {
		return nil, err
	}
	b.progress("criu: %s, %d files from %d packages (%d cached)", criu.Version, len(criu.Files), criu.Cached+criu.Fetched, criu.Cached)
	sh, err := b.busybox(ctx, criu)
	if err != nil {
		return nil, err
	}
	pkgs, err := b.packages(ctx, criu, sh)
	if err != nil {
		return nil, err
	}
	bins, err := b.goBinaries(ctx)
	if err != nil {
		return nil, err
	}
	files := append(modFiles, bins...)
	part := map[string]string{} // archive path: its part, for the sizes make image prints
	for _, f := range bins {
		part[f.Dst] = PartGo
	}
	for _, f := range criu.Files {
		files = append(files, initramfs.File{Src: filepath.Join(criu.Sysroot, f), Dst: f})
		part[f] = PartCRIU
	}
	shFiles, links := sh.files()
	files = append(files, shFiles...)
	for _, f := range shFiles {
		part[f.Dst] = PartShell
	}
	for l := range links {
		part[l] = PartShell
	}
	if pkgs != nil {
		files = append(files, pkgs.file())
		part[pkgs.file().Dst] = PartPackages
	}
	files, err = b.splitLate(files, lateLater(lateMods, criu, sh, pkgs != nil))
	if err != nil {
		return nil, err
	}
	part[agentboot.LatePath] = PartLate
	// The initramfs carries no key (the head serves it to anyone who
	// asks); the key goes in its own archive, which only the ISO loads.
	rd, err := b.initramfs(ctx, k, files, links)
	if err != nil {
		return nil, err
	}
	parts, err := PartSizes(rd, partClassifier(part))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.cfg.Progress, "  initramfs parts (unpacked in RAM, and zstd-compressed alone):\n")
	printParts(b.cfg.Progress, parts)
	if err := writeKeyCPIO(filepath.Join(b.staging, KeyCPIOName), key); err != nil {
		return nil, err
	}
	m := &Manifest{
		Version:       b.cfg.Version,
		KernelVersion: k.Version,
		ClusterID:     key.ID,
		KeyFile:       filepath.Join(b.cfg.Out, KeyName),
		Kernel:        KernelName,
		Initramfs:     filepath.Base(rd),
		KeyInitramfs:  KeyCPIOName,
		ISO:           ISOName,
		PXEDir:        PXEDirName,
		Cmdline:       Cmdline,
		Packages:      b.cfg.Packages,
	}
	kernelPath := filepath.Join(b.staging, KernelName)
	if err := b.images(ctx, m, kernelPath, rd); err != nil {
		return nil, err
	}
	return m, nil
}

// key returns the cluster key (with the cluster's ID, which a key file
// written by drift rekey carries): from --key-file, else the one already
// in the output directory (so a rebuild does not split the cluster), else
// a new one. A key that is not yet in the output directory is staged there.
func (b *builder) key() (clusterkey.Cluster, error) {
	existing := filepath.Join(b.cfg.Out, KeyName)
	var (
		k     clusterkey.Cluster
		err   error
		note  string
		stage = true // the output directory does not hold this key yet
	)
	switch {
	case b.cfg.KeyFile != "":
		k, err = clusterkey.LoadCluster(b.cfg.KeyFile)
		note = "from " + b.cfg.KeyFile
	case fileSize(existing) > 0:
		k, err = clusterkey.LoadCluster(existing)
		note = "reusing " + existing + " so this image joins the same cluster; delete it for a new cluster"
		stage = false
	default:
		var nk clusterkey.Key
		nk, err = clusterkey.Generate()
		k, note = clusterkey.Of(nk), "new key"
	}
	if err != nil {
		return k, err
	}
	if stage {
		if err := clusterkey.WriteCluster(filepath.Join(b.staging, KeyName), k); err != nil {
			return k, err
		}
	}
	b.progress("key: cluster %s (key %s), %s", k.ID, k.Key.ID(), note)
	return k, nil
}

// kernel gets the kernel and stages it as vmlinuz.
func (b *builder) kernel(ctx context.Context) (kernel, error) {
	var (
		k   kernel
		err error
	)
	if b.cfg.Kernel == "" && b.cfg.Modules == "" {
		k, err = b.debianKernel(ctx)
	} else {
		k, err = b.hostKernel(ctx)
	}
	if err != nil {
		return k, err
	}
	if _, err := bzImageVersion(k.Image); err != nil {
		return k, err
	}
	if err := placeFile(k.Image, filepath.Join(b.staging, KernelName)); err != nil {
		return k, fmt.Errorf("kernel: %w", err)
	}
	how := "downloaded"
	if k.Cached {
		how = "cached"
	}
	b.progress("kernel: %s %s (%s, %s)", k.Source, k.Version, how, mib(fileSize(k.Image)))
	return k, nil
}

// earlyLists are the module lists whose modules (and their dependencies)
// a node may load before it is ready: the network's drivers, which the
// agent loads first (boot.EarlyDevice), and what mounting the image's
// Debian packages needs. The others go in the late archive.
var earlyLists = []string{"nics.list", "virt.list", modules.Packages}

// modules resolves configs/modules/*.list with their dependencies and
// returns the module files and index files for the initramfs, and the
// archive paths of the modules that are not needed before ready (not in
// earlyLists). The list for mounting Debian packages goes in only with
// packages.
func (b *builder) modules(k kernel) ([]initramfs.File, map[string]bool, error) {
	tree, err := kmod.Open(k.Modules)
	if err != nil {
		return nil, nil, err
	}
	lists, err := modules.Lists()
	if err != nil {
		return nil, nil, err
	}
	if len(b.cfg.Packages) == 0 {
		delete(lists, modules.Packages) // nothing to mount
	}
	var all []string
	seen, early := map[string]bool{}, map[string]bool{}
	for _, name := range modules.SortedNames(lists) {
		mods, err := tree.Resolve(lists[name]...)
		if errors.Is(err, kmod.ErrUnknown) {
			return nil, nil, fmt.Errorf("module list configs/modules/%s: %w (kernel %s): fix the list", name, err, k.Version)
		}
		if err != nil {
			return nil, nil, err
		}
		for _, m := range mods {
			if !seen[m] {
				seen[m] = true
				all = append(all, m)
			}
			if slices.Contains(earlyLists, name) {
				early[m] = true
			}
		}
	}
	idx := filepath.Join(b.staging, "modules")
	if err := os.MkdirAll(idx, 0o755); err != nil {
		return nil, nil, fmt.Errorf("modules: %w", err)
	}
	if err := tree.WriteIndex(idx, all); err != nil {
		return nil, nil, err
	}
	dst := "lib/modules/" + k.Version + "/"
	files := []initramfs.File{{Src: idx, Dst: dst}}
	late := map[string]bool{}
	var size int64
	for _, m := range all {
		src := filepath.Join(tree.Dir, tree.Path(m))
		size += fileSize(src)
		f := initramfs.File{Src: src, Dst: dst + tree.InstallPath(m)}
		files = append(files, f)
		if !early[m] {
			late[f.Dst] = true
		}
	}
	b.progress("modules: %d from %d lists, dependencies included (%s; %d for the network, loaded before ready)", len(all), len(lists), mib(size), len(all)-len(late))
	return files, late, nil
}

// lateLater returns whether an archive path goes in the late archive:
// the modules in lateMods, and criu's files that /bin/sh does not load.
// With Debian packages criu's libraries stay: a package's program may
// load them, and it may run as soon as the node is ready.
func lateLater(lateMods map[string]bool, criu criuRoot, sh shell, packages bool) func(dst string) bool {
	crit := map[string]bool{}
	if !packages {
		for _, f := range criu.Files {
			if !slices.Contains(sh.Needs, f) {
				crit[f] = true
			}
		}
	}
	return func(dst string) bool { return lateMods[dst] || crit[dst] }
}

// splitLate writes the files that late names into the late archive
// (agentboot.LatePath, unpacked by the agent once the network is up) and
// returns the others, with the late archive among them.
func (b *builder) splitLate(files []initramfs.File, late func(dst string) bool) ([]initramfs.File, error) {
	var early, later []initramfs.File
	var size int64
	for _, f := range files {
		if late(f.Dst) {
			later = append(later, f)
			if fi, err := os.Lstat(f.Src); err == nil && fi.Mode().IsRegular() {
				size += fi.Size()
			}
		} else {
			early = append(early, f)
		}
	}
	out := filepath.Join(b.staging, filepath.Base(agentboot.LatePath))
	if err := initramfs.WriteLate(out, later); err != nil {
		return nil, err
	}
	b.progress("late: %d files (%s; %s compressed) that the agent unpacks once the network is up: criu, and the modules not for the network", len(later), mib(size), mib(fileSize(out)))
	return append(early, initramfs.File{Src: out, Dst: agentboot.LatePath}), nil
}

// goBinaries builds driftd, the drift CLI, the demo workloads, the node's
// init and drift-job (what runs inside every job) with the version
// stamped in.
func (b *builder) goBinaries(ctx context.Context) ([]initramfs.File, error) {
	dir := filepath.Join(b.staging, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("go build: %w", err)
	}
	var files []initramfs.File
	for _, name := range []string{"driftd", "drift", "drift-workload", "drift-init", "drift-job"} {
		out := filepath.Join(dir, name)
		if err := initramfs.GoBuild(ctx, b.cfg.GoDir, "./cmd/"+name, out, b.cfg.Version); err != nil {
			return nil, err
		}
		files = append(files, initramfs.File{Src: out, Dst: "bin/" + name})
	}
	b.progress("go build: driftd %s, drift %s, drift-workload %s, drift-init %s, drift-job %s (version %s)",
		mib(fileSize(files[0].Src)), mib(fileSize(files[1].Src)), mib(fileSize(files[2].Src)), mib(fileSize(files[3].Src)), mib(fileSize(files[4].Src)), b.cfg.Version)
	return files, nil
}

// initramfs assembles and compresses the initramfs and returns its path.
func (b *builder) initramfs(ctx context.Context, k kernel, files []initramfs.File, links map[string]string) (string, error) {
	comp := initramfs.Gzip
	if supportsZstd(k.Config) {
		comp = initramfs.Zstd
	}
	out := filepath.Join(b.staging, "initramfs.cpio"+comp.Ext())
	cached, err := initramfs.Build(ctx, initramfs.Config{
		Output:   out,
		Compress: comp,
		TempDir:  b.staging,
		CacheDir: b.cache,
		GoDir:    b.cfg.GoDir,
		Init:     "/bin/drift-init", // PID 1 (boot.RunPID1): no u-root init before driftd
		Files:    files,
		Symlinks: links,
		Data: []initramfs.Data{
			{Path: "etc/drift/version", Body: []byte(b.cfg.Version + "\n"), Mode: 0o644},
		},
		Logger: b.log,
	})
	if err != nil {
		return "", err
	}
	how := "busybox built"
	if cached {
		how = "busybox cached"
	}
	b.progress("initramfs: %s (%s, %s)", filepath.Base(out), mib(fileSize(out)), how)
	return out, nil
}

// images writes the ISO and the PXE tree.
func (b *builder) images(ctx context.Context, m *Manifest, kernel, rd string) error {
	menu := boot.Menu{
		Version: m.Version,
		Marker:  "/" + isoDir + "/drift-" + markerID(m),
		Timeout: menuTimeout,
		Entries: boot.StandardEntries(m.Cmdline),
	}
	iso := filepath.Join(b.staging, ISOName)
	if err := b.makeISO(ctx, iso, kernel, rd, filepath.Join(b.staging, KeyCPIOName), menu); err != nil {
		return err
	}
	isoSize, kSize, rdSize := fileSize(iso), fileSize(kernel), fileSize(rd)
	b.progress("iso: %s (%s, BIOS+UEFI, CD+USB: kernel %s, initramfs %s, boot loaders, EFI image and iPXE %s)",
		ISOName, mib(isoSize), mib(kSize), mib(rdSize), mib(isoSize-kSize-rdSize))
	if err := b.makePXE(filepath.Join(b.staging, PXEDirName), kernel, rd); err != nil {
		return err
	}
	b.progress("pxe: %s/ with boot.ipxe, undionly.kpxe, snponly.efi, ipxe.efi", PXEDirName)
	return nil
}

// markerID names the file by which GRUB finds this image's medium: the
// same for the same build, different for another version, kernel or cluster.
func markerID(m *Manifest) string {
	h := sha256.Sum256([]byte(m.Version + "\x00" + m.KernelVersion + "\x00" + m.ClusterID))
	return hex.EncodeToString(h[:8])
}
