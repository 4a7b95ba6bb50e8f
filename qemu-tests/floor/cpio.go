package floor

import (
	"fmt"
	"io"
	"io/fs"
	"strings"
)

// CPIOEntry is one member of a newc ("070701") cpio archive, the format the
// Linux kernel unpacks as an initramfs.
type CPIOEntry struct {
	Name  string      // path inside the archive, without a leading slash
	Mode  fs.FileMode // type and permission bits (fs.ModeDir, fs.ModeCharDevice|fs.ModeDevice, or a regular file)
	Data  []byte      // contents of a regular file; nil for directories and devices
	Major uint32      // device major number (devices only)
	Minor uint32      // device minor number (devices only)
}

// Unix file type bits as cpio stores them in c_mode.
const (
	modeDir   = 0o040000
	modeReg   = 0o100000
	modeChr   = 0o020000
	trailer   = "TRAILER!!!"
	newcMagic = "070701"
)

// WriteCPIO writes entries as a newc cpio archive, followed by the trailer.
// Owners are root, timestamps zero, so the output depends only on entries.
func WriteCPIO(w io.Writer, entries []CPIOEntry) error {
	cw := &countWriter{w: w}
	for i, e := range entries {
		if err := writeEntry(cw, uint32(i+1), e); err != nil {
			return fmt.Errorf("write cpio entry %s: %w", e.Name, err)
		}
	}
	if err := writeEntry(cw, 0, CPIOEntry{Name: trailer}); err != nil {
		return fmt.Errorf("write cpio trailer: %w", err)
	}
	return nil
}

func cpioMode(m fs.FileMode) uint32 {
	perm := uint32(m.Perm())
	switch {
	case m.IsDir():
		return modeDir | perm
	case m&fs.ModeCharDevice != 0:
		return modeChr | perm
	default:
		return modeReg | perm
	}
}

func writeEntry(cw *countWriter, ino uint32, e CPIOEntry) error {
	name := strings.TrimPrefix(e.Name, "/")
	mode := cpioMode(e.Mode)
	nlink := uint32(1)
	if e.Mode.IsDir() {
		nlink = 2
	}
	if name == trailer {
		mode = 0
	}
	hdr := fmt.Sprintf("%s%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		newcMagic, ino, mode, 0, 0, nlink, 0, len(e.Data),
		0, 0, e.Major, e.Minor, len(name)+1, 0)
	if _, err := io.WriteString(cw, hdr+name+"\x00"); err != nil {
		return err
	}
	if err := cw.pad(); err != nil {
		return err
	}
	if _, err := cw.Write(e.Data); err != nil {
		return err
	}
	return cw.pad()
}

// countWriter tracks the offset so that headers and data can be padded to
// the 4-byte boundaries newc requires.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func (c *countWriter) pad() error {
	if r := c.n % 4; r != 0 {
		_, err := c.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
