package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/driftcluster/drift/imagebuild/debpkg"
)

// debian fetches packages from Debian's archive with the host's apt-get and
// unpacks them with dpkg-deb into a cache; nothing is installed on the host.
//
// Cache layout: debs/ holds the downloaded .deb files, root/NAME_VERSION/
// each package unpacked (complete once root/NAME_VERSION.done exists),
// root/NAME_VERSION.control/ its control files (postinst...).
type debian struct {
	cache string
	log   *slog.Logger
}

// pkgInfo is a package as apt-cache knows it.
type pkgInfo struct {
	Name, Version string
	Depends       []string // package names, alternatives and versions dropped
}

// show returns what apt-cache knows of the candidate version of name.
func (d *debian) show(ctx context.Context, name string) (pkgInfo, error) {
	infos, err := d.showAll(ctx, name)
	if err != nil {
		return pkgInfo{}, err
	}
	return infos[0], nil
}

// showAll returns what apt-cache knows of the candidate versions of names,
// in order, with one apt-cache run (each run reads all of apt's lists).
func (d *debian) showAll(ctx context.Context, names ...string) ([]pkgInfo, error) {
	args := append([]string{"show", "--no-all-versions"}, names...)
	out, err := run(ctx, "", "apt-cache", args...)
	if err != nil {
		return nil, fmt.Errorf("look up Debian packages %s: %w (are they in Debian's archive? run apt-get update)", strings.Join(names, " "), err)
	}
	byName := parseShow(out)
	infos := make([]pkgInfo, len(names))
	for i, n := range names {
		info, ok := byName[n]
		if !ok || info.Version == "" {
			return nil, fmt.Errorf("look up Debian package %s: apt-cache shows no version (run apt-get update)", n)
		}
		infos[i] = info
	}
	return infos, nil
}

// archive returns apt's index of Debian's archive: one record per amd64
// (or architecture-independent) package, at its candidate version
// (apt-cache dumpavail, one run).
func (d *debian) archive(ctx context.Context) (*debpkg.Index, error) {
	out, err := run(ctx, "", "apt-cache", "dumpavail")
	if err != nil {
		return nil, fmt.Errorf("read apt's index of Debian's archive: %w", err)
	}
	all, err := debpkg.ParseRecords(bytes.NewReader(out))
	if err != nil {
		return nil, err
	}
	// A host with foreign architectures lists their packages too.
	var recs []debpkg.Record
	for _, r := range all {
		if r.Architecture == "amd64" || r.Architecture == "all" {
			recs = append(recs, r)
		}
	}
	if len(recs) == 0 {
		return nil, errors.New("apt knows no packages: run apt-get update (with Debian's archive in /etc/apt/sources.list)")
	}
	d.log.Debug("apt index", "packages", len(recs))
	return debpkg.NewIndex(recs), nil
}

// parseShow parses apt-cache show output: paragraphs of "Key: value" lines.
func parseShow(out []byte) map[string]pkgInfo {
	byName := map[string]pkgInfo{}
	var cur pkgInfo
	flush := func() {
		if cur.Name != "" {
			byName[cur.Name] = cur
		}
		cur = pkgInfo{}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if sc.Text() == "" {
			flush()
			continue
		}
		k, v, _ := strings.Cut(sc.Text(), ": ")
		switch k {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Depends", "Pre-Depends":
			cur.Depends = append(cur.Depends, parseDepends(v)...)
		}
	}
	flush()
	return byName
}

// parseDepends returns the package names of a Depends field, taking the
// first of each set of alternatives.
func parseDepends(field string) []string {
	var names []string
	for _, dep := range strings.Split(field, ",") {
		first, _, _ := strings.Cut(dep, "|")
		name, _, _ := strings.Cut(strings.TrimSpace(first), " ")
		name, _, _ = strings.Cut(name, ":")
		if name != "" {
			names = append(names, name)
		}
	}
	return names
}

// unpackedDir is where the cache keeps info unpacked.
func (d *debian) unpackedDir(info pkgInfo) string {
	return filepath.Join(d.cache, "root", info.Name+"_"+info.Version)
}

// controlDir is where the cache keeps info's control files (control,
// postinst...).
func (d *debian) controlDir(info pkgInfo) string { return d.unpackedDir(info) + ".control" }

// control returns the directory holding info's control files, taking
// them from its .deb, which it downloads again if the cache lost it.
func (d *debian) control(ctx context.Context, info pkgInfo) (string, error) {
	dir := d.controlDir(info)
	if _, err := os.Stat(filepath.Join(dir, "control")); err == nil {
		return dir, nil
	}
	deb, ok := d.cachedDeb(info)
	if !ok {
		debs, err := d.download(ctx, []pkgInfo{info})
		if err != nil {
			return "", err
		}
		deb = debs[0]
	}
	if err := d.extractControl(ctx, info, deb); err != nil {
		return "", err
	}
	return dir, nil
}

// cachedDeb returns the .deb of info in the cache, if it is there (apt
// writes an epoch's ':' as "%3a" in the file name).
func (d *debian) cachedDeb(info pkgInfo) (string, bool) {
	got, _ := filepath.Glob(filepath.Join(d.cache, "debs", info.Name+"_"+strings.ReplaceAll(info.Version, ":", "%3a")+"_*.deb"))
	if len(got) != 1 {
		return "", false
	}
	return got[0], true
}

// extractControl puts the control files of the .deb of info into the cache.
func (d *debian) extractControl(ctx context.Context, info pkgInfo, deb string) error {
	dir := d.controlDir(info)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if _, err := run(ctx, "", "dpkg-deb", "--control", deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("read the control files of %s: %w", deb, err)
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("read the control files of %s: %w", info.Name, err)
	}
	return nil
}

// cached reports whether the cache holds info unpacked.
func (d *debian) cached(info pkgInfo) bool {
	_, err := os.Stat(d.unpackedDir(info) + ".done")
	return err == nil
}

// fetch downloads and unpacks the candidate version of the package, unless
// the cache has it, and returns the directory it is unpacked in.
func (d *debian) fetch(ctx context.Context, info pkgInfo) (dir string, cached bool, err error) {
	dirs, n, err := d.fetchAll(ctx, []pkgInfo{info})
	if err != nil {
		return "", false, err
	}
	return dirs[0], n == 1, nil
}

// fetchAll downloads (with one apt-get run) and unpacks the packages the
// cache lacks, and returns the directories all are unpacked in and how
// many were cached.
func (d *debian) fetchAll(ctx context.Context, infos []pkgInfo) (dirs []string, cached int, err error) {
	var missing []pkgInfo
	for _, info := range infos {
		dirs = append(dirs, d.unpackedDir(info))
		if d.cached(info) {
			cached++
		} else {
			missing = append(missing, info)
		}
	}
	if len(missing) == 0 {
		return dirs, cached, nil
	}
	debs, err := d.download(ctx, missing)
	if err != nil {
		return nil, 0, err
	}
	for i, info := range missing {
		if err := d.unpack(ctx, info, debs[i]); err != nil {
			return nil, 0, err
		}
	}
	return dirs, cached, nil
}

// unpack extracts the .deb of info into the cache.
func (d *debian) unpack(ctx context.Context, info pkgInfo, deb string) error {
	dir := d.unpackedDir(info)
	tmp := dir + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return fmt.Errorf("unpack %s: %w", info.Name, err)
	}
	if _, err := run(ctx, "", "dpkg-deb", "-x", deb, tmp); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("unpack %s: %w", deb, err)
	}
	if err := d.extractControl(ctx, info, deb); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("unpack %s: %w", info.Name, err)
	}
	if err := os.WriteFile(dir+".done", nil, 0o644); err != nil {
		return fmt.Errorf("unpack %s: %w", info.Name, err)
	}
	d.log.Debug("unpacked", "package", info.Name, "version", info.Version, "dir", dir)
	return nil
}

// download runs apt-get download for the packages, at their versions, into
// the cache, and returns the .deb paths in the same order.
func (d *debian) download(ctx context.Context, infos []pkgInfo) ([]string, error) {
	names := make([]string, len(infos))
	args := []string{"-q", "-o", "APT::Sandbox::User=root", "download"}
	for i, info := range infos {
		names[i] = info.Name
		args = append(args, info.Name+"="+info.Version)
	}
	what := strings.Join(names, " ")
	debs := filepath.Join(d.cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, fmt.Errorf("download %s: %w", what, err)
	}
	tmp, err := os.MkdirTemp(debs, ".download-")
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", what, err)
	}
	defer os.RemoveAll(tmp)
	// apt drops privileges to _apt for downloads into a directory _apt may
	// not write; root downloads directly and apt does not warn about it.
	if _, err := run(ctx, tmp, "apt-get", args...); err != nil {
		return nil, fmt.Errorf("download %s: %w (check access to Debian's archive, or run apt-get update)", what, err)
	}
	paths := make([]string, len(infos))
	for i, info := range infos {
		got, _ := filepath.Glob(filepath.Join(tmp, info.Name+"_*.deb"))
		if len(got) != 1 {
			return nil, fmt.Errorf("download %s: apt-get download left %d .deb files for it", info.Name, len(got))
		}
		paths[i] = filepath.Join(debs, filepath.Base(got[0]))
		if err := os.Rename(got[0], paths[i]); err != nil {
			return nil, fmt.Errorf("download %s: %w", info.Name, err)
		}
	}
	return paths, nil
}

// run runs a host command in dir ("" for the current directory) and returns
// its standard output. A failure's error carries the last line of its
// standard error, which is where apt and dpkg say what went wrong.
func run(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s: %s", name, lastLine(stderr.String(), err.Error()))
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}

// lastLine returns the last line of s that is not a warning, or def.
func lastLine(s, def string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" && !strings.HasPrefix(l, "W:") {
			return l
		}
	}
	return def
}
