//go:build linux

package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	criu "github.com/checkpoint-restore/go-criu/v7"
	"google.golang.org/protobuf/proto"
)

// A checkpoint is a full CRIU dump of a running job that leaves it
// running, kept so that the job can start again elsewhere from it when
// its node dies. The dump is written on the node (WorkDir, a tmpfs), so
// that the job is frozen only while CRIU writes to memory; Publish then
// copies it to shared storage while the job runs, under a temporary name,
// and renames it into place: a checkpoint that is cut short is never
// taken for a complete one.

// CheckpointStats describe one checkpoint.
type CheckpointStats struct {
	Freeze time.Duration // the job was frozen this long
	Bytes  int64         // the images' size
}

// Checkpoint dumps job into a new directory under WorkDir and leaves it
// running. frozen is called while CRIU holds the job frozen, after its
// images are written (the job agent notes how much output the job had
// written then). It returns the directory, which the caller publishes
// (Publish) and removes.
func (n *Node) Checkpoint(ctx context.Context, job Job, frozen func()) (dir string, st CheckpointStats, err error) {
	if reasons, err := Check(job.Pid, n.SharedRoot, job.Stdio[:]); err != nil {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	} else if len(reasons) > 0 {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, &NotMigratableError{Reasons: reasons})
	}
	if err := os.MkdirAll(n.WorkDir, 0o700); err != nil {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	work, err := os.MkdirTemp(n.WorkDir, "checkpoint-")
	if err != nil {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(work)
		}
	}()
	wd, err := os.Open(work)
	if err != nil {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	defer wd.Close()
	src := &Source{CriuPath: n.CriuPath, Logger: n.Logger, Pid: job.Pid, dumpMu: &n.dumpMu}
	opts, img, err := src.opts(work, wd, "images", "")
	if err != nil {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	defer img.Close()
	opts.TrackMem = proto.Bool(false)
	opts.LeaveRunning = proto.Bool(true)
	if err := ctx.Err(); err != nil {
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, err)
	}
	c := criu.MakeCriu()
	if n.CriuPath != "" {
		c.SetCriuPath(n.CriuPath)
	}
	var start time.Time
	var unlock sync.Once
	hook := &postDump{ctx: ctx, run: func(ctx context.Context) error {
		unlock.Do(src.unlockDump)
		if frozen != nil {
			frozen()
		}
		return nil
	}}
	src.lockDump()
	start = time.Now()
	err = c.Dump(opts, hook)
	unlock.Do(src.unlockDump)
	st.Freeze = time.Since(start)
	if !hook.done || err != nil {
		// CRIU resumes the tree itself; make sure (SIGCONT is harmless to
		// a running task).
		signalTree(job.Pid, syscall.SIGCONT)
		return "", st, fmt.Errorf("checkpoint job %d: %w", job.Pid, criuError("checkpoint dump", filepath.Join(work, "images.log"), err))
	}
	st.Freeze = hook.end.Sub(start)
	st.Bytes, _ = dirSize(filepath.Join(work, "images"))
	ok = true
	return work, st, nil
}

// CheckpointImages is where Checkpoint's directory keeps the images.
func CheckpointImages(dir string) string { return filepath.Join(dir, "images") }

// Publish copies the directory src to dst, which must not exist, on
// shared storage: into a temporary sibling first, each file synced, then
// renamed into place. A copy cut short leaves only the temporary, which
// the next Publish to the same parent removes.
func Publish(src, dst string) error {
	parent := filepath.Dir(dst)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("publish checkpoint: %w", err)
	}
	tmp := filepath.Join(parent, ".partial-"+filepath.Base(dst))
	os.RemoveAll(tmp)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		out := filepath.Join(tmp, rel)
		switch {
		case d.IsDir():
			return os.MkdirAll(out, 0o700)
		case d.Type()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, out)
		case d.Type().IsRegular():
			return copyFile(p, out)
		}
		return nil
	})
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("publish checkpoint to %s: %w", dst, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// Fetch copies a published checkpoint's images into WorkDir/id/final,
// where Target.Restore looks for them.
func (t *Target) Fetch(published, id string) error {
	if !validName.MatchString(id) {
		return fmt.Errorf("fetch checkpoint %q: %w: bad id", id, ErrBadImage)
	}
	dir := filepath.Join(t.WorkDir, id, "final")
	os.RemoveAll(filepath.Dir(dir))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("fetch checkpoint: %w", err)
	}
	src := CheckpointImages(published)
	ents, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("fetch checkpoint: %w", err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return fmt.Errorf("fetch checkpoint %s: %w: %s is not a file", published, ErrBadImage, e.Name())
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return fmt.Errorf("fetch checkpoint %s: %w", published, err)
		}
	}
	return nil
}

// dirSize is the bytes of the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	return n, err
}
