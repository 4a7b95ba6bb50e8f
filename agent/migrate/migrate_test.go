//go:build linux

package migrate

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestExplain(t *testing.T) {
	for _, tt := range []struct {
		name string
		log  string
		want string // substring of the explanation
	}{
		{"tcp", "(00.1) Error (criu/sk-inet.c:199): inet: Connected TCP socket, consider using --tcp-established option.\n(00.2) Error (criu/cr-dump.c:1): Dumping FAILED.", "TCP connection"},
		{"unix external", "(00.1) Error (criu/sk-unix.c:854): unix: External socket is used. Consider using --ext-unix-sk option.", "unix socket"},
		{"inherit", "(00.1) Error (criu/files.c:1): Unable to find an inherit fd for pipe:[1234]", "stdio relay"},
		{"mount", "(00.5) Error (criu/files-reg.c:1620): Can't lookup mount=42 for fd=3 path=/mnt/x.log", "/mnt/x.log open on a file system"},
		{"cpu", "(00.0) Error (criu/arch/x86/cpu.c:300): CPU instruction capabilities do not match run time", "target CPU lacks a feature"},
		{"fpu", "(00.0) Error (criu/arch/x86/cpu.c:280): FPU feature required by image is not supported on host (fpu:0 fxsr:0 osxsave:1 xsaves:0)", "osxsave:1"},
		{"bad size", "(01.0) Error (criu/files-reg.c:2000): File bin/prog has bad size 10 (expect 12)", "bin/prog the job uses differs"},
		{"missing file", "(01.0) Error (criu/files-reg.c:2100): Can't open file tmp/x.log on restore: No such file or directory", "does not exist on the target"},
		{"first error wins", "(00.1) Error (criu/sk-inet.c:1): inet: Connected TCP socket\n(00.2) Error (criu/files-reg.c:1): Can't lookup mount=1 for fd=2 path=/x", "TCP"},
		{"fallback", "(00.1) Info: something\n(00.2) Error (criu/cr-restore.c:9): Something odd happened\n", "CRIU: Something odd happened"},
		{"nothing", "(00.1) Info: all fine\n", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(tt.log)
			if tt.want == "" && got != "" || !strings.Contains(got, tt.want) {
				t.Errorf("Explain(%q) = %q, want it to contain %q", tt.log, got, tt.want)
			}
		})
	}
}

func TestLastRound(t *testing.T) {
	for _, tt := range []struct {
		name        string
		round       int
		pages, prev uint64
		want        bool
	}{
		{"first big round goes on", 1, 16384, 0, false},
		{"shrinking goes on", 2, 2000, 16384, false},
		{"tiny stops", 2, 63, 16384, true},
		{"tiny first stops", 1, 10, 0, true},
		{"growing stops", 3, 2100, 2000, true},
		{"flat stops", 3, 1950, 2000, true},
		{"shrinking by a tenth goes on", 3, 1800, 2000, false},
		{"max rounds stop", maxRounds, 5000, 50000, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got, why := lastRound(tt.round, tt.pages, tt.prev); got != tt.want {
				t.Errorf("lastRound(%d, %d, %d) = %v (%s), want %v", tt.round, tt.pages, tt.prev, got, why, tt.want)
			}
		})
	}
}

type entry struct {
	name, link string
	typ        byte
	body       string
}

func tarOf(t *testing.T, entries []entry) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: 0o600, Size: int64(len(e.body))}
		if e.typ != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if e.typ == tar.TypeReg {
			tw.Write([]byte(e.body))
		}
	}
	tw.Close()
	return &b
}

func TestReceive(t *testing.T) {
	for _, tt := range []struct {
		name    string
		id, img string
		entries []entry
		wantErr bool
	}{
		{"images with parent", "j1", "pre-2.tar", []entry{
			{name: "pages-1.img", typ: tar.TypeReg, body: "pages"},
			{name: "parent", link: "../pre-1", typ: tar.TypeSymlink},
		}, false},
		{"dot-dot entry", "j1", "final.tar", []entry{{name: "../evil", typ: tar.TypeReg, body: "x"}}, true},
		{"absolute entry", "j1", "final.tar", []entry{{name: "/tmp/evil", typ: tar.TypeReg, body: "x"}}, true},
		{"nested dot-dot", "j1", "final.tar", []entry{{name: "a/../../evil", typ: tar.TypeReg, body: "x"}}, true},
		{"parent out of the job", "j1", "final.tar", []entry{{name: "parent", link: "../../other/pre-1", typ: tar.TypeSymlink}}, true},
		{"parent absolute", "j1", "final.tar", []entry{{name: "parent", link: "/etc", typ: tar.TypeSymlink}}, true},
		{"other symlink", "j1", "final.tar", []entry{{name: "x", link: "../pre-1", typ: tar.TypeSymlink}}, true},
		{"write through symlink", "j1", "final.tar", []entry{
			{name: "parent", link: "../pre-1", typ: tar.TypeSymlink},
			{name: "parent/evil", typ: tar.TypeReg, body: "x"},
		}, true},
		{"device", "j1", "final.tar", []entry{{name: "null", typ: tar.TypeChar}}, true},
		{"hard link", "j1", "final.tar", []entry{{name: "h", link: "/etc/passwd", typ: tar.TypeLink}}, true},
		{"bad id", "../j1", "final.tar", nil, true},
		{"bad name", "j1", "../final.tar", nil, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			top := t.TempDir()
			work := filepath.Join(top, "work")
			tg := &Target{WorkDir: work}
			err := tg.Receive(context.Background(), tt.id, tt.img, tarOf(t, tt.entries))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Receive(%s) = %v, want error %v", tt.name, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrBadImage) && !strings.Contains(err.Error(), "escapes") &&
				!strings.Contains(err.Error(), "path") {
				t.Logf("error: %v", err)
			}
			// Nothing may appear outside work/id/.
			filepath.Walk(top, func(p string, info os.FileInfo, err error) error {
				if err == nil && !strings.HasPrefix(p, filepath.Join(work, "j1")) && p != top && p != work {
					t.Errorf("Receive(%s) wrote %s", tt.name, p)
				}
				return nil
			})
			if !tt.wantErr {
				got, err := os.ReadFile(filepath.Join(work, "j1", "pre-2", "pages-1.img"))
				if err != nil || string(got) != "pages" {
					t.Errorf("pages-1.img = %q, %v; want %q", got, err, "pages")
				}
				if l, _ := os.Readlink(filepath.Join(work, "j1", "pre-2", "parent")); l != "../pre-1" {
					t.Errorf("parent -> %q, want ../pre-1", l)
				}
				tg.Discard("j1")
				if _, err := os.Stat(filepath.Join(work, "j1")); !os.IsNotExist(err) {
					t.Errorf("Discard left %s: %v", filepath.Join(work, "j1"), err)
				}
			}
		})
	}
}

func TestTarRoundTrip(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "core-1.img"), []byte("core"), 0o600)
	os.Symlink("../pre-1", filepath.Join(src, "parent"))
	var b bytes.Buffer
	if err := writeTar(&b, src); err != nil {
		t.Fatal(err)
	}
	tg := &Target{WorkDir: t.TempDir()}
	if err := tg.Receive(context.Background(), "j", "pre-2.tar", &b); err != nil {
		t.Fatalf("Receive(writeTar(...)) = %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(tg.WorkDir, "j", "pre-2", "core-1.img")); string(got) != "core" {
		t.Errorf("core-1.img = %q, want core", got)
	}
}

// TestMain marks every descriptor the test binary inherited close-on-exec,
// so that the children Check looks at hold only what each test gives them.
func TestMain(m *testing.M) {
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
				unix.CloseOnExec(fd)
			}
		}
	}
	os.Exit(m.Run())
}

// startHolder starts a child that holds the files given as ExtraFiles
// (fds 3...) and sleeps.
func startHolder(t *testing.T, files ...*os.File) int {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	cmd.Dir = "/"
	cmd.ExtraFiles = files
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd.Process.Pid
}

func TestCheck(t *testing.T) {
	dir := t.TempDir() // under /tmp (or $TMPDIR): not shared
	shared := t.TempDir()
	open := func(p string, flag int) *os.File {
		f, err := os.OpenFile(p, flag|os.O_CREATE, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	lf, _ := ln.(*net.TCPListener).File()
	defer lf.Close()
	pr, pw, _ := os.Pipe()
	defer pr.Close()
	defer pw.Close()
	var st unix.Stat_t
	unix.Fstat(int(pw.Fd()), &st)
	sp, _ := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	s0, s1 := os.NewFile(uintptr(sp[0]), "s0"), os.NewFile(uintptr(sp[1]), "s1")
	defer s0.Close()
	defer s1.Close()

	for _, tt := range []struct {
		name    string
		files   func() []*os.File
		allowed bool   // the pipe is the job's stdio
		want    string // substring of a reason's What; "" for none
	}{
		{"clean", func() []*os.File { return []*os.File{open(os.DevNull, os.O_RDWR)} }, false, ""},
		{"tmp file", func() []*os.File { return []*os.File{open(filepath.Join(dir, "x.log"), os.O_WRONLY)} }, false, "x.log (fd 3)"},
		{"shared file", func() []*os.File { return []*os.File{open(filepath.Join(shared, "y.log"), os.O_WRONLY)} }, false, ""},
		{"image file read-only", func() []*os.File { return []*os.File{open("/etc/hostname", os.O_RDONLY)} }, false, ""},
		{"tcp listener", func() []*os.File { return []*os.File{lf} }, false, "TCP socket 127.0.0.1:"},
		{"external pipe", func() []*os.File { return []*os.File{pw} }, false, "pipe:["},
		{"stdio pipe", func() []*os.File { return []*os.File{pw} }, true, ""},
		{"unix pair inside", func() []*os.File { return []*os.File{s0, s1} }, false, ""},
		{"unix to outside", func() []*os.File { return []*os.File{s0} }, false, "socket:["},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pid := startHolder(t, tt.files()...)
			var allowed []uint64
			if tt.allowed {
				allowed = []uint64{st.Ino}
			}
			reasons, err := Check(pid, shared, allowed)
			if err != nil {
				t.Fatalf("Check(%d) = %v", pid, err)
			}
			if tt.want == "" {
				if len(reasons) != 0 {
					t.Errorf("Check(%s) = %v, want none", tt.name, reasons)
				}
				return
			}
			found := false
			for _, r := range reasons {
				if strings.Contains(r.What, tt.want) && r.Why != "" && r.Fix != "" && r.PID == pid {
					found = true
				}
			}
			if !found {
				t.Errorf("Check(%s) = %v, want a reason about %q", tt.name, reasons, tt.want)
			}
		})
	}
}

func TestCheckTree(t *testing.T) {
	dir := t.TempDir()
	// A shell whose child holds a /tmp file: Check must walk down to it.
	cmd := exec.Command("sh", "-c", "sleep 60 3>"+filepath.Join(dir, "child.log")+" & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Process.Kill(); cmd.Wait() })
	cmd.SysProcAttr = nil
	deadline := time.Now().Add(5 * time.Second)
	for {
		reasons, err := Check(cmd.Process.Pid, "/cluster", nil)
		if err != nil {
			t.Fatalf("Check = %v", err)
		}
		for _, r := range reasons {
			if strings.Contains(r.What, "child.log") && r.PID != cmd.Process.Pid {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("Check(sh) = %v, want the child's child.log", reasons)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestNotMigratableError(t *testing.T) {
	err := error(&NotMigratableError{Reasons: []Reason{{PID: 1, What: "/tmp/x (fd 3)", Why: "why", Fix: "fix"}}})
	if !errors.Is(err, ErrNotMigratable) {
		t.Errorf("errors.Is(%v, ErrNotMigratable) = false", err)
	}
	if !strings.Contains(err.Error(), "/tmp/x (fd 3)") {
		t.Errorf("Error() = %q, want the file named", err)
	}
}

// A job whose working directory is no longer what its path names (it was
// removed, or a mount covers it) is named: the target would open the path.
func TestCheckStaleCwd(t *testing.T) {
	shared := t.TempDir()
	for _, tt := range []struct {
		name  string
		after func(dir string) error
		want  bool
	}{
		{"in place", func(string) error { return nil }, false},
		{"removed", os.Remove, true},
		{"replaced", func(dir string) error {
			if err := os.Remove(dir); err != nil {
				return err
			}
			return os.Mkdir(dir, 0o700)
		}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(shared, tt.name)
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sleep", "60")
			cmd.Dir = dir
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			if err := tt.after(dir); err != nil {
				t.Fatal(err)
			}
			reasons, err := Check(cmd.Process.Pid, shared, nil)
			if err != nil {
				t.Fatal(err)
			}
			got := slices.ContainsFunc(reasons, func(r Reason) bool { return strings.Contains(r.What, "working directory") })
			if got != tt.want {
				t.Errorf("Check = %v; want a working-directory reason: %v", reasons, tt.want)
			}
		})
	}
}

// TestCheckHalfClosedPipe: a pipe whose other end nobody holds any more
// (a shell reading $(cmd) after cmd exited) does not keep a job here; one
// whose other end a process outside the job holds does, and is named.
func TestCheckHalfClosedPipe(t *testing.T) {
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pid := startHolder(t, pr)
	pr.Close()
	reasons, err := Check(pid, t.TempDir(), nil)
	if err != nil {
		t.Fatalf("Check = %v", err)
	}
	if len(reasons) == 0 || !strings.Contains(reasons[0].Why, fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("Check with the write end held here = %v, want a reason naming pid %d", reasons, os.Getpid())
	}
	pw.Close()
	if reasons, err := Check(pid, t.TempDir(), nil); err != nil || len(reasons) != 0 {
		t.Errorf("Check with the write end closed = %v, %v; want no reason", reasons, err)
	}
}

// A scratch directory that a dump cut short left in the root task's
// working directory goes before the next dump; a file of that name, or
// a directory with something in it, stays.
func TestClearScratch(t *testing.T) {
	for _, tt := range []struct {
		name string
		make func(p string) error
		gone bool
	}{
		{"empty directory", func(p string) error { return os.Mkdir(p, 0o700) }, true},
		{"a file of the job's", func(p string) error { return os.WriteFile(p, []byte("data"), 0o644) }, false},
		{"a directory with files", func(p string) error {
			if err := os.Mkdir(p, 0o700); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(p, "x"), nil, 0o644)
		}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, parasiteScratch)
			if err := tt.make(p); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sleep", "60")
			cmd.Dir = dir
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			(&Source{Pid: cmd.Process.Pid}).lockDump()
			_, err := os.Lstat(p)
			if gone := errors.Is(err, os.ErrNotExist); gone != tt.gone {
				t.Errorf("%s gone: %v, want %v", parasiteScratch, gone, tt.gone)
			}
		})
	}
}
