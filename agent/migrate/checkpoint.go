//go:build linux

package migrate

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Fetch copies a published checkpoint (Chain.Publish) into WorkDir/id,
// where Target.Restore looks for it: its newest level as final, each
// level before it beside it as its parent. A checkpoint in the layout
// before incremental ones (a directory holding images/) is copied as it is.
func (t *Target) Fetch(published, id string) error {
	if !validName.MatchString(id) || strings.Contains(id, "..") {
		return fmt.Errorf("fetch checkpoint %q: %w: bad id", id, ErrBadImage)
	}
	base := filepath.Join(t.WorkDir, id)
	os.RemoveAll(base)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fmt.Errorf("fetch checkpoint: %w", err)
	}
	if fi, err := os.Stat(published); err == nil && fi.IsDir() {
		return fetchDir(published, filepath.Join(base, "final"))
	}
	levels, err := readCheckpoint(published)
	if err != nil {
		return fmt.Errorf("fetch checkpoint: %w", err)
	}
	dir := filepath.Dir(published)
	prev := ""
	for i, l := range levels {
		name := strings.TrimSuffix(l, ".tar")
		if i == len(levels)-1 {
			name = "final"
		}
		if err := fetchLevel(filepath.Join(dir, l), filepath.Join(base, name), prev); err != nil {
			return fmt.Errorf("fetch checkpoint %s: %w", published, err)
		}
		prev = name
	}
	return nil
}

// fetchLevel unpacks the level file src into the new directory dst, and
// links it to its parent directory, a sibling ("": none).
func fetchLevel(src, dst, parent string) error {
	f, err := os.Open(src)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := os.Mkdir(dst, 0o700); err != nil {
		return err
	}
	if err := untar(context.Background(), dst, bufio.NewReaderSize(f, 256<<10)); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(src), err)
	}
	if parent != "" {
		return os.Symlink("../"+parent, filepath.Join(dst, "parent"))
	}
	return nil
}

// fetchDir copies the images of a checkpoint published as a directory.
func fetchDir(published, dir string) error {
	if err := os.Mkdir(dir, 0o700); err != nil {
		return fmt.Errorf("fetch checkpoint: %w", err)
	}
	src := filepath.Join(published, "images")
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
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
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
