package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hugelgupf/p9/p9"
	"golang.org/x/sys/unix"
)

// logBuffer collects a test server's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startServer serves dir on a loopback port to the peers allow accepts
// and returns the port's address and the server's log.
func startServer(t *testing.T, dir string, allow func(netip.Addr) bool) (string, *logBuffer) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	s := &Server{Dir: dir, Allow: allow, Recheck: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return l.Addr().String(), logs
}

// dialFrom connects to addr from the loopback address from (127.0.0.0/8
// is all local, so each test client can be a different "node").
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	return c
}

// attach is a 9P2000.L client session from the given loopback address.
func attach(t *testing.T, from, addr string) (*p9.Client, p9.File) {
	t.Helper()
	c, err := p9.NewClient(dialFrom(t, from, addr), p9.WithMessageSize(DefaultMsize))
	if err != nil {
		t.Fatalf("9P version from %s: %v", from, err)
	}
	root, err := c.Attach("")
	if err != nil {
		t.Fatalf("9P attach from %s: %v", from, err)
	}
	t.Cleanup(func() { root.Close(); c.Close() })
	return c, root
}

func allowOnly(addrs ...string) func(netip.Addr) bool {
	return func(a netip.Addr) bool {
		for _, s := range addrs {
			if a.String() == s {
				return true
			}
		}
		return false
	}
}

// create creates name in dir, opened for writing. (A 9P create turns the
// fid it is sent on into the new file: it is sent on a clone of dir.)
func create(t *testing.T, dir p9.File, name string, perm p9.FileMode) p9.File {
	t.Helper()
	_, d, err := dir.Walk(nil)
	if err != nil {
		t.Fatalf("clone fid: %v", err)
	}
	f, _, _, err := d.Create(name, p9.WriteOnly, perm, p9.NoUID, p9.NoGID)
	if err != nil {
		d.Close()
		t.Fatalf("create %s: %v", name, err)
	}
	return f
}

// walkOpen walks root to name and opens it with flags.
func walkOpen(t *testing.T, root p9.File, name string, flags p9.OpenFlags) p9.File {
	t.Helper()
	_, f, err := root.Walk(strings.Split(name, "/"))
	if err != nil {
		t.Fatalf("walk %s: %v", name, err)
	}
	if _, _, err := f.Open(flags); err != nil {
		t.Fatalf("open %s (%v): %v", name, flags, err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(t *testing.T, f p9.File) []byte {
	t.Helper()
	var out []byte
	buf := make([]byte, 64<<10)
	for off := int64(0); ; {
		n, err := f.ReadAt(buf, off)
		if n == 0 && (err == nil || errors.Is(err, io.EOF)) {
			return out
		}
		if err != nil {
			t.Fatalf("read at %d: %v", off, err)
		}
		out = append(out, buf[:n]...)
		off += int64(n)
	}
}

// TestServerFiles writes through one client and reads through another,
// and checks the operations a shell on a node does.
func TestServerFiles(t *testing.T) {
	dir := t.TempDir()
	addr, _ := startServer(t, dir, allowOnly("127.0.0.2", "127.0.0.3"))
	_, a := attach(t, "127.0.0.2", addr)
	_, b := attach(t, "127.0.0.3", addr)

	// Create and write on a, read back on b byte for byte.
	want := bytes.Repeat([]byte("drift shared storage\n"), 20000) // 420 KB: several messages
	f := create(t, a, "data.txt", 0o640)
	for off := 0; off < len(want); {
		n, err := f.WriteAt(want[off:min(off+100000, len(want))], int64(off))
		if err != nil {
			t.Fatalf("write at %d: %v", off, err)
		}
		off += n
	}
	f.Close()
	if got := readAll(t, walkOpen(t, b, "data.txt", p9.ReadOnly)); !bytes.Equal(got, want) {
		t.Errorf("read back %d bytes, want the %d written", len(got), len(want))
	}
	if fi, err := os.Stat(filepath.Join(dir, "data.txt")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("exported file: %v, %v; want mode 0640 whatever the server's umask", fi, err)
	}

	// O_EXCL is honoured when asked for.
	_, d0, _ := a.Walk(nil)
	if _, _, _, err := d0.Create("data.txt", p9.WriteOnly|p9.OpenFlags(unix.O_EXCL), 0o644, p9.NoUID, p9.NoGID); err == nil {
		t.Errorf("create of an existing file with O_EXCL succeeded")
	}
	d0.Close()

	// Directories, rename, unlink, readdir.
	if _, err := a.Mkdir("sub", 0o755, p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	_, sub, err := a.Walk([]string{"sub"})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if err := a.RenameAt("data.txt", sub, "moved.txt"); err != nil {
		t.Fatalf("rename: %v", err)
	}
	for i := range 300 {
		create(t, sub, fmt.Sprintf("f%03d", i), 0o644).Close()
	}
	if _, err := sub.Mkdir("inner", 0o755, p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("mkdir: %v", err)
	}
	d := walkOpen(t, b, "sub", p9.ReadOnly)
	seen := map[string]bool{}
	types := map[string]p9.QIDType{}
	for off := uint64(0); ; {
		ents, err := d.Readdir(off, 4096)
		if err != nil {
			t.Fatalf("readdir at %d: %v", off, err)
		}
		if len(ents) == 0 {
			break
		}
		for _, e := range ents {
			seen[e.Name] = true
			types[e.Name] = e.Type
			off = e.Offset
		}
	}
	if len(seen) != 302 || !seen["moved.txt"] || !seen["f299"] || !seen["inner"] {
		t.Errorf("readdir listed %d names, want 302 with moved.txt, f299 and inner", len(seen))
	}
	// Linux takes an entry's type as its d_type: without it, every
	// listing of a directory stats each entry over the network.
	if types["f299"] != unix.DT_REG || types["inner"] != unix.DT_DIR {
		t.Errorf("readdir types: f299 %d, inner %d; want DT_REG (%d) and DT_DIR (%d)", types["f299"], types["inner"], unix.DT_REG, unix.DT_DIR)
	}
	if err := sub.UnlinkAt("f000", 0); err != nil {
		t.Errorf("unlink: %v", err)
	}
	if err := a.UnlinkAt("sub", 0); err == nil {
		t.Errorf("unlink of a directory without AT_REMOVEDIR succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "sub", "f000")); !os.IsNotExist(err) {
		t.Errorf("f000 still exists after unlink: %v", err)
	}

	// Truncate and times (touch, cp -p) work.
	_, moved, err := sub.Walk([]string{"moved.txt"})
	if err != nil {
		t.Fatal(err)
	}
	defer moved.Close()
	mt := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := moved.SetAttr(p9.SetAttrMask{Size: true, MTime: true, MTimeNotSystemTime: true, Permissions: true},
		p9.SetAttr{Size: 5, MTimeSeconds: uint64(mt.Unix()), Permissions: 0o600}); err != nil {
		t.Fatalf("setattr: %v", err)
	}
	fi, err := os.Stat(filepath.Join(dir, "sub", "moved.txt"))
	if err != nil || fi.Size() != 5 || !fi.ModTime().Equal(mt) || fi.Mode().Perm() != 0o600 {
		t.Errorf("after setattr: %v %v; want size 5, mtime %v, mode 0600", fi, err, mt)
	}

	// df on a node.
	st, err := a.StatFS()
	if err != nil || st.Blocks == 0 {
		t.Errorf("statfs = %+v, %v; want the backing store's sizes", st, err)
	}
}

// TestServerConcurrentAppends has three clients append lines to one file
// at once, each believing (as the kernel client does) that the end is
// where it last wrote: no line may be lost or torn.
func TestServerConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	addr, _ := startServer(t, dir, allowOnly("127.0.0.2", "127.0.0.3", "127.0.0.4"))
	const lines = 300
	var wg sync.WaitGroup
	for i, from := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"} {
		_, root := attach(t, from, addr)
		// Every node creates the file as `echo >>` does (O_CREAT without
		// O_EXCL): the first creates it, the others open it.
		_, d, err := root.Walk(nil)
		if err != nil {
			t.Fatal(err)
		}
		f, _, _, err := d.Create("log", p9.WriteOnly|p9.OpenFlags(unix.O_APPEND|unix.O_CREAT), 0o644, p9.NoUID, p9.NoGID)
		if err != nil {
			t.Fatalf("node%d: create log without O_EXCL: %v", i+1, err)
		}
		t.Cleanup(func() { f.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			var off int64 // stale: what this client wrote itself
			for j := range lines {
				line := fmt.Sprintf("node%d line %04d\n", i+1, j)
				n, err := f.WriteAt([]byte(line), off)
				if err != nil {
					t.Errorf("node%d append %d: %v", i+1, j, err)
					return
				}
				off += int64(n)
			}
		}()
	}
	wg.Wait()
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		got[l] = true
	}
	for i := 1; i <= 3; i++ {
		for j := range lines {
			if l := fmt.Sprintf("node%d line %04d", i, j); !got[l] {
				t.Fatalf("line %q lost (file has %d lines, want %d)", l, len(got), 3*lines)
			}
		}
	}
	if len(got) != 3*lines {
		t.Errorf("file has %d distinct lines, want %d", len(got), 3*lines)
	}
}

// TestServerStaysInside checks that a symlink a client makes cannot lead
// the server out of the exported directory.
func TestServerStaysInside(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	addr, _ := startServer(t, dir, allowOnly("127.0.0.2"))
	_, root := attach(t, "127.0.0.2", addr)
	if _, err := root.Symlink(outside, "escape", p9.NoUID, p9.NoGID); err != nil {
		t.Fatalf("symlink: %v", err)
	}
	_, f, err := root.Walk([]string{"escape", "secret"})
	if err == nil {
		_, _, err = f.Open(p9.ReadOnly)
		if err == nil {
			t.Fatalf("opened %s/secret through a symlink in the export", outside)
		}
	}
}

// TestServerRefusesNonMembers connects from an address that is not a
// member's: the connection is closed before any 9P and logged; a member
// that leaves loses its connection.
func TestServerRefusesNonMembers(t *testing.T) {
	var member atomic.Bool
	member.Store(true)
	allow := func(a netip.Addr) bool { return a.String() == "127.0.0.2" && member.Load() }
	addr, logs := startServer(t, t.TempDir(), allow)

	c, err := p9.NewClient(dialFrom(t, "127.0.0.9", addr))
	if err == nil {
		c.Close()
		t.Fatalf("a client from 127.0.0.9 (not a member) got a 9P session")
	}
	want := "refused storage connection from 127.0.0.9:"
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), want) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "not a cluster member") {
		t.Errorf("server log lacks %q ... not a cluster member:\n%s", want, logs)
	}

	_, root := attach(t, "127.0.0.2", addr)
	if _, err := root.StatFS(); err != nil {
		t.Fatalf("member's statfs: %v", err)
	}
	member.Store(false) // the node died or left
	deadline = time.Now().Add(5 * time.Second)
	for {
		_, err := root.StatFS()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a node that left the cluster still uses the export")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
