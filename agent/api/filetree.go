package api

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Tree is a file or a directory tree as drift cp moves it, both ways: Name
// in Root. On the wire it is a tar stream whose first entry, ".", is the
// item itself (a regular file or a directory), followed, for a directory,
// by everything under it, named relative to the item, each directory
// before what it holds. Entries are regular files, directories and
// relative symlinks with their permission bits and modification times;
// nothing else crosses: no devices, pipes, sockets or hard links, no
// owners, no setuid, setgid or sticky bits. The receiver writes each file
// under a hidden temporary name in its directory (.NAME.drift-part-RANDOM),
// syncs it, sets its mode and time and only then renames it into place,
// so a transfer that breaks leaves no partial file under a real name.
//
// A stream cut between two entries reads as complete to tar; the files
// endpoints carry it in HTTP/1.1 chunked bodies, whose framing tells a cut
// stream from a finished one.
type Tree struct {
	Root *os.Root // required: everything read or written stays inside it
	Name string   // the item in Root, a slash-separated path; "." is Root itself (Send and Scan only)

	// Shared is where the item is, or lands, under SharedRoot ("." is
	// SharedRoot): every symlink in the tree must be relative and stay
	// inside SharedRoot read from there (ErrLeavesShared). "" means the
	// tree is on a user's own disk, a download: a symlink needs only be
	// relative (the agent that sent it checked it against SharedRoot, and
	// Root confines what Receive writes).
	Shared string

	Display  string        // how errors name the item: "/cluster/work/sim", "./results"; "": Name
	Progress func(n int64) // called as file bytes pass, from the calling goroutine; nil: none
}

const (
	maxName   = 4096      // bytes of an entry's name or a symlink's target
	copyChunk = 256 << 10 // bytes per read and write of file data (the 9P mount's msize)
	partInfix = ".drift-part-"
)

func (t Tree) display(rel string) string {
	d := t.Display
	if d == "" {
		d = t.Name
	}
	if rel == "." {
		return d
	}
	return strings.TrimSuffix(d, "/") + "/" + rel
}

// rel is the entry name of p, a path in Root under Name.
func (t Tree) rel(p string) string {
	switch {
	case p == t.Name:
		return "."
	case t.Name == ".":
		return p
	}
	return strings.TrimPrefix(p, t.Name+"/")
}

// pathError names the entry rel in err, an error of an os.Root call,
// without the system call and the path in Root that *PathError adds.
func (t Tree) pathError(rel string, err error) error {
	var pe *fs.PathError
	var le *os.LinkError
	switch {
	case errors.As(err, &pe):
		err = pe.Err
	case errors.As(err, &le):
		err = le.Err
	}
	// os.Root refuses a symlink out of it with this unexported error.
	if t.Shared != "" && err.Error() == "path escapes from parent" {
		err = ErrLeavesShared
	}
	return fmt.Errorf("%s: %w", t.display(rel), err)
}

// Error names the item in err, an error of an os.Root call on Name, as
// the tree's other errors do.
func (t Tree) Error(err error) error {
	return t.pathError(".", err)
}

// checkLink applies the symlink rule to the entry rel pointing at target.
func (t Tree) checkLink(rel, target string) error {
	switch {
	case target == "" || len(target) > maxName || strings.ContainsRune(target, 0):
		return fmt.Errorf("%s: symlink target %q: %w", t.display(rel), target, ErrBadArchive)
	case path.IsAbs(target):
		return fmt.Errorf("%s -> %s: an absolute symlink: %w (make it relative, or copy what it points to)", t.display(rel), target, ErrLeavesShared)
	case t.Shared == "":
		return nil
	}
	if to := path.Join(t.Shared, path.Dir(rel), target); to != "." && !filepath.IsLocal(to) {
		return fmt.Errorf("%s -> %s: %w", t.display(rel), target, ErrLeavesShared)
	}
	return nil
}

// entry is one file of a tree being walked.
type entry struct {
	rel  string // name in the stream; "." is the item
	path string // in Root
	info fs.FileInfo
	link string // a symlink's target
}

// walk calls fn for the item (following it if it is a symlink) and, for
// a directory, everything under it, in lexical order, without following
// symlinks. It refuses what cannot be copied.
func (t Tree) walk(ctx context.Context, fn func(entry) error) error {
	if !fs.ValidPath(t.Name) {
		return fmt.Errorf("%s: %w", t.display("."), fs.ErrInvalid)
	}
	fsys := t.Root.FS()
	return fs.WalkDir(fsys, t.Name, func(p string, d fs.DirEntry, err error) error {
		rel := t.rel(p)
		if err != nil {
			return t.pathError(rel, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return t.pathError(rel, err)
		}
		e := entry{rel: rel, path: p, info: info}
		switch m := info.Mode(); {
		case m.IsDir(), m.IsRegular():
		case m&fs.ModeSymlink != 0:
			if e.link, err = t.Root.Readlink(p); err != nil {
				return t.pathError(rel, err)
			}
			if err := t.checkLink(rel, e.link); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s: %w", t.display(rel), kindOf(m), ErrUnsupportedFile)
		}
		return fn(e)
	})
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

// Scan walks the tree as Send would and counts what Send would send; it
// refuses what Send would refuse, before a byte has moved.
func (t Tree) Scan(ctx context.Context) (TreeSize, error) {
	var n TreeSize
	err := t.walk(ctx, func(e entry) error {
		switch m := e.info.Mode(); {
		case m.IsDir():
			n.Dirs++
		case m.IsRegular():
			n.Files++
			n.Bytes += e.info.Size()
		default:
			n.Links++
		}
		return nil
	})
	return n, err
}

// Send writes the tree to w as a tar stream and returns what it sent. It
// stops at the first error, leaving the stream without its end: a
// receiver then keeps nothing partial.
func (t Tree) Send(ctx context.Context, w io.Writer) (TreeSize, error) {
	var n TreeSize
	tw := tar.NewWriter(w)
	buf := make([]byte, copyChunk)
	err := t.walk(ctx, func(e entry) error {
		h := &tar.Header{Name: e.rel, Mode: int64(e.info.Mode().Perm()), ModTime: e.info.ModTime(), Format: tar.FormatPAX}
		switch m := e.info.Mode(); {
		case m.IsDir():
			h.Typeflag = tar.TypeDir
			n.Dirs++
		case m.IsRegular():
			size, err := t.sendFile(tw, e, h, buf)
			n.Bytes += size
			if err == nil {
				n.Files++
			}
			return err
		default:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
			n.Links++
		}
		return tw.WriteHeader(h)
	})
	if err != nil {
		return n, err
	}
	return n, tw.Close()
}

// sendFile writes the regular file e as h: its size, mode and time as the
// open file has them.
func (t Tree) sendFile(tw *tar.Writer, e entry, h *tar.Header, buf []byte) (int64, error) {
	f, err := t.Root.Open(e.path)
	if err != nil {
		return 0, t.pathError(e.rel, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, t.pathError(e.rel, err)
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s: changed while being copied: no longer a regular file", t.display(e.rel))
	}
	h.Typeflag, h.Size, h.Mode, h.ModTime = tar.TypeReg, fi.Size(), int64(fi.Mode().Perm()), fi.ModTime()
	if err := tw.WriteHeader(h); err != nil {
		return 0, err
	}
	done, rerr, werr := copyN(tw, f, h.Size, buf, t.Progress)
	switch {
	case werr != nil:
		return done, werr
	case errors.Is(rerr, io.ErrUnexpectedEOF):
		return done, fmt.Errorf("%s: changed while being copied: shrank from %d to %d bytes", t.display(e.rel), h.Size, done)
	case rerr != nil:
		return done, t.pathError(e.rel, rerr)
	}
	return done, nil
}

// copyN copies n bytes from src to dst and tells a read error from a
// write error; src ending early is io.ErrUnexpectedEOF.
func copyN(dst io.Writer, src io.Reader, n int64, buf []byte, progress func(int64)) (done int64, rerr, werr error) {
	for done < n {
		b := buf
		if rem := n - done; rem < int64(len(b)) {
			b = b[:rem]
		}
		m, err := src.Read(b)
		if m > 0 {
			if _, werr := dst.Write(b[:m]); werr != nil {
				return done, nil, werr
			}
			done += int64(m)
			if progress != nil {
				progress(int64(m))
			}
		}
		if errors.Is(err, io.EOF) && done < n {
			return done, io.ErrUnexpectedEOF, nil
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return done, err, nil
		}
	}
	return done, nil, nil
}

// entryName checks a tar entry's name: "." or a clean relative path.
func entryName(name string) (string, error) {
	if name == "." {
		return name, nil
	}
	if len(name) > maxName || strings.ContainsRune(name, 0) || path.Clean(name) != name || !filepath.IsLocal(name) {
		return "", fmt.Errorf("entry %q: not a clean relative path: %w", name, ErrBadArchive)
	}
	return name, nil
}

// dirMeta is a received directory's mode and time, set once everything in
// it is written.
type dirMeta struct {
	path string
	mode fs.FileMode
	h    *tar.Header
}

// Receive unpacks the tar stream r, as Send writes it, at Name in Root,
// and returns what it wrote. Name's parent must be a directory. A file
// replaces one of the same name; a directory merges into one that exists.
// Whatever the error, no partial file is left: files complete before it
// stay, and directories get their modes and times.
func (t Tree) Receive(ctx context.Context, r io.Reader) (n TreeSize, err error) {
	if !fs.ValidPath(t.Name) || t.Name == "." {
		return n, fmt.Errorf("%s: %w", t.display("."), fs.ErrInvalid)
	}
	if parent := path.Dir(t.Name); parent != "." {
		fi, err := t.Root.Stat(parent)
		if err == nil && !fi.IsDir() {
			err = syscall.ENOTDIR
		}
		if err != nil {
			return n, Tree{Root: t.Root, Name: parent, Shared: t.Shared, Display: path.Dir(t.display("."))}.Error(err)
		}
	}
	var dirs []dirMeta
	defer func() {
		// Deepest first, so that setting one's time is not undone by
		// touching another inside it; modes such as 0555 last.
		for _, d := range slices.Backward(dirs) {
			cerr := t.Root.Chmod(d.path, d.mode)
			if cerr == nil {
				cerr = t.Root.Chtimes(d.path, d.h.ModTime, d.h.ModTime)
			}
			if cerr != nil && err == nil {
				err = t.pathError(t.rel(d.path), cerr)
			}
		}
	}()
	tr := tar.NewReader(r)
	buf := make([]byte, copyChunk)
	seen := map[string]bool{} // directories received
	single := false           // the item is a file: nothing may follow
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			if i == 0 {
				return n, fmt.Errorf("%s: empty stream: %w", t.display("."), ErrBadArchive)
			}
			return n, nil
		}
		if err != nil {
			return n, streamError(err)
		}
		rel, err := entryName(h.Name)
		if err != nil {
			return n, err
		}
		switch {
		case i == 0 && rel != ".":
			return n, fmt.Errorf("first entry %q: want \".\", the item itself: %w", rel, ErrBadArchive)
		case i > 0 && (rel == "." || single):
			return n, fmt.Errorf("entry %q after the item %s: %w", rel, describeItem(single), ErrBadArchive)
		case i > 0 && !seen[path.Dir(rel)]:
			return n, fmt.Errorf("entry %q before its directory: %w", rel, ErrBadArchive)
		}
		dst := path.Join(t.Name, rel)
		mode := fs.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := t.mkdir(dst, rel); err != nil {
				return n, err
			}
			seen[rel] = true
			dirs = append(dirs, dirMeta{path: dst, mode: mode, h: h})
			n.Dirs++
		case tar.TypeReg:
			if single = i == 0; single {
				// Refuse before the data comes, not after.
				if fi, err := t.Root.Lstat(dst); err == nil && fi.IsDir() {
					return n, fmt.Errorf("%s: %w", t.display(rel), syscall.EISDIR)
				}
			}
			if err := t.receiveFile(tr, h, dst, rel, mode, buf); err != nil {
				return n, err
			}
			n.Files++
			n.Bytes += h.Size
		case tar.TypeSymlink:
			if i == 0 {
				return n, fmt.Errorf("the item is a symlink: %w", ErrBadArchive)
			}
			if err := t.checkLink(rel, h.Linkname); err != nil {
				return n, err
			}
			if err := t.receiveLink(h.Linkname, dst, rel); err != nil {
				return n, err
			}
			n.Links++
		default:
			return n, fmt.Errorf("%s: %s: %w", t.display(rel), typeName(h.Typeflag), ErrUnsupportedFile)
		}
	}
}

func describeItem(single bool) string {
	if single {
		return "(a file)"
	}
	return "again"
}

func typeName(f byte) string {
	switch f {
	case tar.TypeLink:
		return "a hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "a device"
	case tar.TypeFifo:
		return "a named pipe"
	}
	return fmt.Sprintf("an entry of tar type %q", f)
}

// streamError says that the stream broke, keeping the cause.
func streamError(err error) error {
	return fmt.Errorf("the transfer broke off: %w", err)
}

// mkdir makes directory dst, or accepts one that exists.
func (t Tree) mkdir(dst, rel string) error {
	err := t.Root.Mkdir(dst, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		if err != nil {
			return t.pathError(rel, err)
		}
		return nil
	}
	fi, err := t.Root.Stat(dst)
	if err != nil {
		return t.pathError(rel, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: exists and is %w", t.display(rel), syscall.ENOTDIR)
	}
	return nil
}

// tempName is the hidden name dst is written under until it is complete.
func tempName(dst string) string {
	var b [6]byte
	rand.Read(b[:])
	base := path.Base(dst)
	if len(base) > 200 {
		base = base[:200]
	}
	return path.Join(path.Dir(dst), "."+base+partInfix+hex.EncodeToString(b[:]))
}

// IsPartial reports whether name is a temporary name of a file still
// being received.
func IsPartial(name string) bool {
	return strings.HasPrefix(name, ".") && strings.Contains(name, partInfix)
}

// receiveFile writes the file entry h at dst: under a temporary name,
// synced, with its mode and time, then renamed into place.
func (t Tree) receiveFile(tr io.Reader, h *tar.Header, dst, rel string, mode fs.FileMode, buf []byte) (err error) {
	tmp := tempName(dst)
	f, err := t.Root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return t.pathError(rel, err)
	}
	defer func() {
		if f != nil {
			f.Close()
		}
		if err != nil {
			t.Root.Remove(tmp)
		}
	}()
	if _, rerr, werr := copyN(f, tr, h.Size, buf, t.Progress); werr != nil {
		return t.pathError(rel, werr)
	} else if rerr != nil {
		return streamError(rerr)
	}
	if err := f.Chmod(mode); err != nil {
		return t.pathError(rel, err)
	}
	if err := f.Sync(); err != nil {
		return t.pathError(rel, err)
	}
	cerr := f.Close()
	f = nil
	if cerr != nil {
		return t.pathError(rel, cerr)
	}
	if err := t.Root.Chtimes(tmp, h.ModTime, h.ModTime); err != nil {
		return t.pathError(rel, err)
	}
	if err := t.Root.Rename(tmp, dst); err != nil {
		return t.renameError(rel, dst, err)
	}
	return nil
}

// renameError words a failed rename onto dst: a directory in the way is
// EISDIR, whatever the system call said.
func (t Tree) renameError(rel, dst string, err error) error {
	if fi, serr := t.Root.Lstat(dst); serr == nil && fi.IsDir() {
		err = syscall.EISDIR
	}
	return t.pathError(rel, err)
}

// receiveLink makes dst a symlink to target, replacing what is there
// unless it is a directory.
func (t Tree) receiveLink(target, dst, rel string) error {
	tmp := tempName(dst)
	if err := t.Root.Symlink(target, tmp); err != nil {
		return t.pathError(rel, err)
	}
	if err := t.Root.Rename(tmp, dst); err != nil {
		t.Root.Remove(tmp)
		return t.renameError(rel, dst, err)
	}
	return nil
}
