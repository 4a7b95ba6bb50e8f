package storage

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hugelgupf/p9/fsimpl/templatefs"
	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// exportFS is the exported directory as 9P2000.L files. It replaces
// hugelgupf/p9's localfs, which does not fit shared storage:
//   - an O_APPEND open reaches os.OpenFile as is, and Go's WriteAt then
//     fails on such a file, so `echo x >> f` on a node fails; here appends
//     are write(2)s on an O_APPEND descriptor, so appends from several
//     nodes at once land whole at the end of the file (the kernel client
//     sends the offset it believes is the end, which is stale when
//     another node appended meanwhile);
//   - it has no unlink, statfs, chmod, chown or utimes;
//   - it follows symlinks out of the export; every path here is resolved
//     inside an os.Root, so a symlink cannot lead out of the directory.
type exportFS struct {
	root *os.Root

	fdOnce sync.Once
	dir    *os.File // the root directory, open for openat2 (beneath.go)
	fd     int
}

// attach implements p9.Attacher.
func (e *exportFS) Attach() (p9.File, error) {
	return &file{fs: e, path: "."}, nil
}

// file is one fid: a path inside the export, and once opened its
// descriptor.
type file struct {
	templatefs.XattrUnimplemented
	p9.DefaultWalkGetAttr

	fs     *exportFS
	path   string   // relative to the export's root; "." for the root
	f      *os.File // nil until Open or Create
	append bool     // opened with O_APPEND: writes go to the end, whatever the offset
}

var _ p9.File = (*file)(nil)

func (f *file) child(name string) string { return path.Join(f.path, name) }

// qid describes fi.
func qid(fi fs.FileInfo) p9.QID {
	q := p9.QID{Type: p9.ModeFromOS(fi.Mode()).QIDType()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		q.Path = st.Ino
	}
	return q
}

func (f *file) lstat() (fs.FileInfo, error) {
	if f.f != nil {
		return f.f.Stat()
	}
	return f.fs.lstatBeneath(f.path)
}

// Walk implements p9.File.
func (f *file) Walk(names []string) ([]p9.QID, p9.File, error) {
	cur := &file{fs: f.fs, path: f.path}
	var qids []p9.QID
	for _, name := range names {
		next := &file{fs: f.fs, path: cur.child(name)}
		fi, err := next.lstat()
		if err != nil {
			return nil, nil, err
		}
		qids = append(qids, qid(fi))
		cur = next
	}
	return qids, cur, nil
}

// GetAttr implements p9.File.
func (f *file) GetAttr(req p9.AttrMask) (p9.QID, p9.AttrMask, p9.Attr, error) {
	fi, err := f.lstat()
	if err != nil {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return p9.QID{}, p9.AttrMask{}, p9.Attr{}, unix.EIO
	}
	attr := p9.Attr{
		Mode:             p9.FileMode(st.Mode),
		UID:              p9.UID(st.Uid),
		GID:              p9.GID(st.Gid),
		NLink:            p9.NLink(st.Nlink),
		RDev:             p9.Dev(st.Rdev),
		Size:             uint64(st.Size),
		BlockSize:        uint64(st.Blksize),
		Blocks:           uint64(st.Blocks),
		ATimeSeconds:     uint64(st.Atim.Sec),
		ATimeNanoSeconds: uint64(st.Atim.Nsec),
		MTimeSeconds:     uint64(st.Mtim.Sec),
		MTimeNanoSeconds: uint64(st.Mtim.Nsec),
		CTimeSeconds:     uint64(st.Ctim.Sec),
		CTimeNanoSeconds: uint64(st.Ctim.Nsec),
	}
	valid := p9.AttrMask{Mode: true, NLink: true, UID: true, GID: true, RDev: true, ATime: true,
		MTime: true, CTime: true, INo: true, Size: true, Blocks: true}
	return qid(fi), valid, attr, nil
}

// SetAttr implements p9.File: chmod, chown, truncate and utimes.
func (f *file) SetAttr(valid p9.SetAttrMask, attr p9.SetAttr) error {
	r := f.fs.root
	if valid.Permissions {
		if err := r.Chmod(f.path, osMode(attr.Permissions)); err != nil {
			return err
		}
	}
	if valid.UID || valid.GID {
		uid, gid := -1, -1
		if valid.UID {
			uid = int(attr.UID)
		}
		if valid.GID {
			gid = int(attr.GID)
		}
		if err := r.Lchown(f.path, uid, gid); err != nil {
			return err
		}
	}
	if valid.Size {
		if err := f.truncate(int64(attr.Size)); err != nil {
			return err
		}
	}
	if valid.ATime || valid.MTime {
		fi, err := f.lstat()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		now := time.Now()
		at, mt := time.Unix(st.Atim.Unix()), time.Unix(st.Mtim.Unix())
		if valid.ATime {
			at = now
			if valid.ATimeNotSystemTime {
				at = time.Unix(int64(attr.ATimeSeconds), int64(attr.ATimeNanoSeconds))
			}
		}
		if valid.MTime {
			mt = now
			if valid.MTimeNotSystemTime {
				mt = time.Unix(int64(attr.MTimeSeconds), int64(attr.MTimeNanoSeconds))
			}
		}
		if err := r.Chtimes(f.path, at, mt); err != nil {
			return err
		}
	}
	return nil // CTime changes with any of the above
}

// osMode is the permission bits of m, with its setuid, setgid and sticky
// bits as os.FileMode has them.
func osMode(m p9.FileMode) os.FileMode {
	out := os.FileMode(m & 0o777)
	if m&p9.FileMode(unix.S_ISUID) != 0 {
		out |= os.ModeSetuid
	}
	if m&p9.FileMode(unix.S_ISGID) != 0 {
		out |= os.ModeSetgid
	}
	if m&p9.FileMode(unix.S_ISVTX) != 0 {
		out |= os.ModeSticky
	}
	return out
}

func (f *file) truncate(size int64) error {
	if f.f != nil && !f.append {
		if err := f.f.Truncate(size); err == nil {
			return nil
		}
	}
	t, err := f.fs.openBeneath(f.path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer t.Close()
	return t.Truncate(size)
}

// openFlags keeps the open(2) flags of a 9P2000.L open that make sense on
// the server: the access mode, truncation, append and sync. (The kernel
// client also sends O_DIRECT, O_NOATIME, O_LARGEFILE and the like, which
// would make open fail on some backing file systems or mean nothing here.)
func openFlags(mode p9.OpenFlags) int {
	return int(mode) & (unix.O_ACCMODE | unix.O_TRUNC | unix.O_APPEND | unix.O_SYNC | unix.O_DSYNC)
}

// Open implements p9.File.
func (f *file) Open(mode p9.OpenFlags) (p9.QID, uint32, error) {
	flags := openFlags(mode)
	of, err := f.fs.openBeneath(f.path, flags, 0)
	if err != nil {
		return p9.QID{}, 0, err
	}
	fi, err := of.Stat()
	if err != nil {
		of.Close()
		return p9.QID{}, 0, err
	}
	f.f, f.append = of, flags&unix.O_APPEND != 0
	return qid(fi), 0, nil
}

// Create implements p9.File. As with open(2), the file is created unless
// it exists, and then opened; only a client that asks for O_EXCL gets
// EEXIST (two nodes running `echo x >> f` for a new f at once must both
// succeed).
func (f *file) Create(name string, mode p9.OpenFlags, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.File, p9.QID, uint32, error) {
	p := f.child(name)
	flags := openFlags(mode)
	of, err := f.fs.openBeneath(p, flags|os.O_CREATE|os.O_EXCL, osMode(perm)&os.ModePerm)
	switch {
	case err == nil:
		// The client applied its umask already: give the file exactly
		// the mode it asked for, whatever the server's umask.
		of.Chmod(osMode(perm))
		chown(of, uid, gid)
	case errors.Is(err, fs.ErrExist) && int(mode)&unix.O_EXCL == 0:
		if of, err = f.fs.openBeneath(p, flags, 0); err != nil {
			return nil, p9.QID{}, 0, err
		}
	default:
		return nil, p9.QID{}, 0, err
	}
	fi, err := of.Stat()
	if err != nil {
		of.Close()
		return nil, p9.QID{}, 0, err
	}
	return &file{fs: f.fs, path: p, f: of, append: flags&unix.O_APPEND != 0}, qid(fi), 0, nil
}

// chown gives a new file the owner the client asked for; best effort (a
// backing store such as vfat has no owners).
func chown(of *os.File, uid p9.UID, gid p9.GID) {
	u, g := -1, -1
	if uid.Ok() {
		u = int(uid)
	}
	if gid.Ok() {
		g = int(gid)
	}
	if u != -1 || g != -1 {
		of.Chown(u, g)
	}
}

// Mkdir implements p9.File.
func (f *file) Mkdir(name string, perm p9.FileMode, uid p9.UID, gid p9.GID) (p9.QID, error) {
	p := f.child(name)
	if err := f.fs.root.Mkdir(p, osMode(perm)&os.ModePerm); err != nil {
		return p9.QID{}, err
	}
	f.fs.root.Chmod(p, osMode(perm))
	if uid.Ok() || gid.Ok() {
		u, g := -1, -1
		if uid.Ok() {
			u = int(uid)
		}
		if gid.Ok() {
			g = int(gid)
		}
		f.fs.root.Lchown(p, u, g)
	}
	fi, err := f.fs.lstatBeneath(p)
	if err != nil {
		return p9.QID{}, err
	}
	return qid(fi), nil
}

// Symlink implements p9.File. The link may point anywhere; following it
// stays inside the export.
func (f *file) Symlink(target, name string, uid p9.UID, gid p9.GID) (p9.QID, error) {
	p := f.child(name)
	if err := f.fs.root.Symlink(target, p); err != nil {
		return p9.QID{}, err
	}
	fi, err := f.fs.lstatBeneath(p)
	if err != nil {
		return p9.QID{}, err
	}
	return qid(fi), nil
}

// Link implements p9.File.
func (f *file) Link(target p9.File, name string) error {
	t, ok := target.(*file)
	if !ok {
		return unix.EXDEV
	}
	return f.fs.root.Link(t.path, f.child(name))
}

// Mknod implements p9.File: only FIFOs and sockets' placeholders are
// useless on shared storage, and device nodes are refused.
func (f *file) Mknod(name string, mode p9.FileMode, major, minor uint32, uid p9.UID, gid p9.GID) (p9.QID, error) {
	return p9.QID{}, unix.EPERM
}

// RenameAt implements p9.File.
func (f *file) RenameAt(oldName string, newDir p9.File, newName string) error {
	d, ok := newDir.(*file)
	if !ok {
		return unix.EXDEV
	}
	return f.fs.root.Rename(f.child(oldName), d.child(newName))
}

// Rename implements p9.File (9P2000.L's older Trename).
func (f *file) Rename(newDir p9.File, newName string) error {
	d, ok := newDir.(*file)
	if !ok {
		return unix.EXDEV
	}
	return f.fs.root.Rename(f.path, d.child(newName))
}

// Renamed implements p9.File: the server tells every fid below a renamed
// one its new place.
func (f *file) Renamed(parent p9.File, newName string) {
	if d, ok := parent.(*file); ok {
		f.path = d.child(newName)
	}
}

// UnlinkAt implements p9.File.
func (f *file) UnlinkAt(name string, flags uint32) error {
	p := f.child(name)
	fi, err := f.fs.lstatBeneath(p)
	if err != nil {
		return err
	}
	if fi.IsDir() != (flags&unix.AT_REMOVEDIR != 0) {
		if fi.IsDir() {
			return unix.EISDIR
		}
		return unix.ENOTDIR
	}
	return f.fs.root.Remove(p)
}

// Readdir implements p9.File. offset is the number of entries the client
// has read; every entry's Offset is its successor's index. The server
// encodes as many entries as fit in the client's buffer.
func (f *file) Readdir(offset uint64, count uint32) (p9.Dirents, error) {
	d, err := f.fs.root.Open(f.path)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	if offset >= uint64(len(names)) {
		return nil, nil
	}
	// An entry takes at least 24 bytes on the wire: no more can fit.
	end := min(uint64(len(names)), offset+uint64(count)/24+1)
	var out p9.Dirents
	for i := offset; i < end; i++ {
		// Each entry by its name in the directory open here, without
		// following a symlink: one system call, where a lookup from the
		// export's root opens every directory on the way.
		var st unix.Stat_t
		if err := unix.Fstatat(int(d.Fd()), names[i], &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			continue // removed meanwhile
		}
		m := p9.FileMode(st.Mode)
		out = append(out, p9.Dirent{QID: p9.QID{Type: m.QIDType(), Path: st.Ino}, Type: direntType(m.OSMode()), Name: names[i], Offset: i + 1})
	}
	return out, nil
}

// direntType is the type byte of a directory entry in Rreaddir. Linux's
// 9P client hands it to readdir(3) as d_type, so it must be a DT_ value,
// not the entry's QID type: with a QID type (0 for a file, 0x80 for a
// directory) every program that lists a directory on /cluster (Go's
// os.ReadDir, ls, find) saw DT_UNKNOWN and stat'ed each entry, three
// more messages each, which the head answers.
func direntType(m fs.FileMode) p9.QIDType {
	switch {
	case m.IsDir():
		return unix.DT_DIR
	case m&fs.ModeSymlink != 0:
		return unix.DT_LNK
	case m&fs.ModeNamedPipe != 0:
		return unix.DT_FIFO
	case m&fs.ModeSocket != 0:
		return unix.DT_SOCK
	case m&fs.ModeCharDevice != 0:
		return unix.DT_CHR
	case m&fs.ModeDevice != 0:
		return unix.DT_BLK
	}
	return unix.DT_REG
}

// Readlink implements p9.File.
func (f *file) Readlink() (string, error) { return f.fs.root.Readlink(f.path) }

// StatFS implements p9.File: the backing store's sizes (df on a node).
func (f *file) StatFS() (p9.FSStat, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(f.fs.root.Name(), &st); err != nil {
		return p9.FSStat{}, err
	}
	return p9.FSStat{
		Type:            uint32(st.Type),
		BlockSize:       uint32(st.Bsize),
		Blocks:          st.Blocks,
		BlocksFree:      st.Bfree,
		BlocksAvailable: st.Bavail,
		Files:           st.Files,
		FilesFree:       st.Ffree,
		NameLength:      uint32(st.Namelen),
	}, nil
}

// ReadAt implements p9.File.
func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if f.f == nil {
		return 0, unix.EBADF
	}
	n, err := f.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	return n, err
}

// WriteAt implements p9.File. A file opened for appending gets p at its
// end, atomically with other appenders, whatever off says.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if f.f == nil {
		return 0, unix.EBADF
	}
	if f.append {
		return f.f.Write(p)
	}
	return f.f.WriteAt(p, off)
}

// FSync implements p9.File.
func (f *file) FSync() error {
	if f.f == nil {
		return nil
	}
	return f.f.Sync()
}

// Lock implements p9.File with open-file-description locks on the fid's
// descriptor: each fid is one open on a node, so POSIX locks taken on
// different nodes exclude each other. The client retries a blocked lock.
func (f *file) Lock(pid int, typ p9.LockType, flags p9.LockFlags, start, length uint64, client string) (p9.LockStatus, error) {
	if f.f == nil {
		return p9.LockStatusError, unix.EBADF
	}
	lk := unix.Flock_t{Whence: io.SeekStart, Start: int64(start), Len: int64(length)}
	switch typ {
	case p9.ReadLock:
		lk.Type = unix.F_RDLCK
	case p9.WriteLock:
		lk.Type = unix.F_WRLCK
	case p9.Unlock:
		lk.Type = unix.F_UNLCK
	default:
		return p9.LockStatusError, unix.EINVAL
	}
	err := unix.FcntlFlock(f.f.Fd(), unix.F_OFD_SETLK, &lk)
	switch {
	case err == nil:
		return p9.LockStatusOK, nil
	case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EACCES):
		return p9.LockStatusBlocked, nil
	}
	return p9.LockStatusError, nil
}

// Close implements p9.File.
func (f *file) Close() error {
	if f.f == nil {
		return nil
	}
	return f.f.Close()
}
