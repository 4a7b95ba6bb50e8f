//go:build linux

package migrate

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"github.com/checkpoint-restore/go-criu/v7/rpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// ErrBadImage reports a tar stream that does not hold a safe images
// directory (a path out of it, a link elsewhere, a device).
var ErrBadImage = errors.New("bad images archive")

// Target receives a job's images and restores it, on the node the job
// moves to.
type Target struct {
	CriuPath string       // "": "criu" from PATH
	WorkDir  string       // received images live in WorkDir/ID/; a tmpfs on a node
	Logger   *slog.Logger // nil: slog.Default()

	restoreMu *sync.Mutex // held while CRIU restores a job's files (Node's); nil: none
}

// InheritFd gives the restored job File where it had the file CRIU names
// Key, e.g. "pipe:[INODE]" with the inode of its stdout pipe on the source.
type InheritFd struct {
	Key  string
	File *os.File
}

func (t *Target) logger() *slog.Logger {
	if t.Logger != nil {
		return t.Logger
	}
	return slog.Default()
}

// validName is an id or an images directory name: one path element.
var validName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// parentLink is the only symlink an images directory holds: CRIU's
// "parent", pointing at a sibling directory.
var parentLink = regexp.MustCompile(`^\.\./[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Receive unpacks the tar stream r, one images directory named name
// ("pre-1.tar", "final.tar"), into WorkDir/id/<name without .tar>. It
// accepts regular files and CRIU's "parent" symlink to a sibling, and
// rejects anything that would reach out of the directory (ErrBadImage).
func (t *Target) Receive(ctx context.Context, id, name string, r io.Reader) error {
	base := strings.TrimSuffix(name, ".tar")
	if !validName.MatchString(id) || !validName.MatchString(base) || strings.Contains(id, "..") || strings.Contains(base, "..") {
		return fmt.Errorf("receive %s/%s: %w: bad name", id, name, ErrBadImage)
	}
	dir := filepath.Join(t.WorkDir, id, base)
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return fmt.Errorf("receive %s/%s: %w", id, name, err)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("receive %s/%s: %w", id, name, err)
	}
	if err := untar(ctx, dir, r); err != nil {
		return fmt.Errorf("receive %s/%s: %w", id, name, err)
	}
	return nil
}

// untar unpacks r into dir, confined to it.
func untar(ctx context.Context, dir string, r io.Reader) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean(h.Name)
		if !filepath.IsLocal(name) || strings.Contains(h.Name, "\\") {
			return fmt.Errorf("%w: entry %q leaves the directory", ErrBadImage, h.Name)
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := root.MkdirAll(name, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		case tar.TypeSymlink:
			if name != "parent" || !parentLink.MatchString(h.Linkname) || strings.Contains(h.Linkname[3:], "..") {
				return fmt.Errorf("%w: link %q -> %q", ErrBadImage, h.Name, h.Linkname)
			}
			if err := root.Symlink(h.Linkname, name); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: entry %q of type %q", ErrBadImage, h.Name, h.Typeflag)
		}
	}
}

// Discard removes the images received for id.
func (t *Target) Discard(id string) {
	if !validName.MatchString(id) || strings.Contains(id, "..") {
		return
	}
	if err := os.RemoveAll(filepath.Join(t.WorkDir, id)); err != nil {
		t.logger().Warn("discard images", "id", id, "err", err)
	}
}

// Restore restores the job whose images are in WorkDir/id (final, with
// its parents beside it), in its own PID namespace as it was dumped, and
// returns the host PID of its root task. The root task becomes a child of
// the calling process (CRIU's rst_sibling), so the caller waits for its
// exit status. inherit rebinds the job's files named by key (its stdio
// pipes) to new files; they are handed to CRIU by inheritance, as fd
// numbers in the criu process.
//
// hold, when not nil, is called once the job is restored and before it
// runs, with its PID, while CRIU holds every task of it: the job runs
// only if hold returns nil; otherwise CRIU kills it and Restore fails.
// This is the target's half of a two-phase move: hold waits until the
// source has let its own copy go.
//
// Restore runs CRIU to completion: ctx is checked only before it starts.
func (t *Target) Restore(ctx context.Context, id string, inherit []InheritFd, hold func(pid int) error) (pid int, err error) {
	if !validName.MatchString(id) || strings.Contains(id, "..") {
		return 0, fmt.Errorf("restore %q: %w: bad id", id, ErrBadImage)
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("restore %s: %w", id, err)
	}
	base := filepath.Join(t.WorkDir, id)
	img, err := os.Open(filepath.Join(base, "final"))
	if err != nil {
		return 0, fmt.Errorf("restore %s: %w", id, err)
	}
	defer img.Close()
	work, err := os.Open(base)
	if err != nil {
		return 0, fmt.Errorf("restore %s: %w", id, err)
	}
	defer work.Close()

	opts := &rpc.CriuOpts{
		ImagesDirFd: proto.Int32(int32(img.Fd())),
		WorkDirFd:   proto.Int32(int32(work.Fd())),
		LogFile:     proto.String("restore.log"),
		LogLevel:    proto.Int32(criuLogLevel),
		RstSibling:  proto.Bool(true),
	}
	// dup() gives descriptors without close-on-exec, which criu swrk
	// inherits when go-criu starts it below. Another goroutine's exec in
	// this window inherits them too; they are closed as soon as CRIU
	// has them.
	for _, in := range inherit {
		fd, err := unix.Dup(int(in.File.Fd()))
		if err != nil {
			return 0, fmt.Errorf("restore %s: inherit %s: %w", id, in.Key, err)
		}
		defer unix.Close(fd)
		opts.InheritFd = append(opts.InheritFd, &rpc.InheritFd{Key: proto.String(in.Key), Fd: proto.Int32(int32(fd))})
	}
	c := criu.MakeCriu()
	if t.CriuPath != "" {
		c.SetCriuPath(t.CriuPath)
	}
	n := &postRestore{hold: hold, restored: func() {}}
	if t.restoreMu != nil {
		t.restoreMu.Lock()
		var once sync.Once
		n.restored = func() { once.Do(t.restoreMu.Unlock) }
		defer n.restored()
	}
	if err := c.Restore(opts, n); err != nil {
		return 0, fmt.Errorf("restore %s: %w", id, criuError("restore", filepath.Join(base, "restore.log"), err))
	}
	if n.pid <= 0 {
		return 0, fmt.Errorf("restore %s: criu reported no pid", id)
	}
	t.logger().Info("restored", "id", id, "pid", n.pid)
	return n.pid, nil
}

type postRestore struct {
	criu.NoNotify
	hold     func(pid int) error
	restored func() // called once the job's files are restored: every task has closed its transport socket
	pid      int
}

// PostRestore runs while CRIU holds the restored tasks, before they run
// (CRIU's post-restore action): an error makes CRIU kill them.
func (p *postRestore) PostRestore(pid int32) error {
	p.pid = int(pid)
	settleNice(p.pid)
	p.restored()
	if p.hold != nil {
		return p.hold(p.pid)
	}
	return nil
}
