package storage

import (
	"errors"
	"io/fs"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Resolving a path inside the export. os.Root opens every directory on
// the way, one openat(2) and one close(2) each: a lookup in
// drift/arrays/ID/tasks/ cost the head a dozen system calls, and on a
// sweep it answers hundreds of lookups a second. openat2(2) with
// RESOLVE_BENEATH resolves the whole path in one call and still refuses
// every way out of the export (.., an absolute symlink, a symlink that
// leads out, /proc magic links). Kernels before 5.6 lack it: os.Root then.

// beneath is how every path is resolved: inside the export's directory,
// and through no /proc magic link.
const beneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS

// noOpenat2 is set once openat2 has been found missing.
var noOpenat2 atomic.Bool

// lstatBeneath is root.Lstat(name): the file name, inside the export,
// without following a symlink in its last component.
func (e *exportFS) lstatBeneath(name string) (fs.FileInfo, error) {
	if name == "." || noOpenat2.Load() {
		return e.root.Lstat(name)
	}
	fd, err := unix.Openat2(e.rootFD(), name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: beneath,
	})
	if errors.Is(err, unix.ENOSYS) {
		noOpenat2.Store(true)
		return e.root.Lstat(name)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "lstat", Path: name, Err: err}
	}
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	return f.Stat()
}

// rootFD is the export's directory, opened once.
func (e *exportFS) rootFD() int {
	e.fdOnce.Do(func() {
		e.fd = -1
		if f, err := e.root.Open("."); err == nil {
			e.dir = f
			e.fd = int(f.Fd())
		}
	})
	return e.fd
}

// openBeneath is root.OpenFile(name, flag, perm): the file name, inside
// the export, opened in one system call.
func (e *exportFS) openBeneath(name string, flag int, perm fs.FileMode) (*os.File, error) {
	if noOpenat2.Load() {
		return e.root.OpenFile(name, flag, perm)
	}
	fd, err := unix.Openat2(e.rootFD(), name, &unix.OpenHow{
		Flags:   uint64(flag) | unix.O_CLOEXEC,
		Mode:    uint64(perm.Perm()),
		Resolve: beneath,
	})
	if errors.Is(err, unix.ENOSYS) {
		noOpenat2.Store(true)
		return e.root.OpenFile(name, flag, perm)
	}
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), name), nil
}
