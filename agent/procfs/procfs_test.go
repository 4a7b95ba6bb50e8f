package procfs

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/google/go-cmp/cmp"
)

// stat is a /proc/PID/stat line with utime 7, stime 3 and rss 5 pages,
// and a command name with a space and a parenthesis in it.
const stat = "42 (a) b) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 100 1000 5 18446744073709551615\n"

func fakeProc() fstest.MapFS {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	return fstest.MapFS{
		// 42 has two threads; its children hang off both. 43 has a child,
		// 45, which 42's second thread also lists (a reparented race):
		// it is counted once. 46 exited after it was listed.
		"42/stat":              file(stat),
		"42/statm":             file("100 5 2 1 0 50 0\n"),
		"42/task/42/children":  file("43 "),
		"42/task/42/schedstat": file("1000 500 3\n"),
		"42/task/44/children":  file("45 46"),
		"42/task/44/schedstat": file("2000 0 1\n"),
		"43/stat":              file(stat),
		"43/statm":             file("100 5 5 1 0 50 0\n"),
		"43/task/43/children":  file("45"),
		"43/task/43/schedstat": file("10 10 1\n"),
		"45/stat":              file(stat),
		"45/task/45/children":  file(""),
		"45/task/45/schedstat": file("0 0 0\n"),
	}
}

func TestTree(t *testing.T) {
	p := Proc{FS: fakeProc(), PageSize: 4096}
	got, err := p.Tree(42)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{42, 43, 45, 46}; !slices.Equal(got, want) {
		t.Errorf("Tree(42) = %v, want %v", got, want)
	}
	if _, err := p.Tree(99); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Tree(99) error = %v, want fs.ErrNotExist", err)
	}
}

func TestTreeUsage(t *testing.T) {
	p := Proc{FS: fakeProc(), PageSize: 4096}
	got, err := p.TreeUsage(42)
	if err != nil {
		t.Fatal(err)
	}
	want := Usage{
		Ticks:  3 * 10,
		WantNs: 1500 + 2000 + 20,
		RSS:    3 * 5 * 4096,
		Anon:   (5 - 2) * 4096, // 43 is all shared; 45 has no statm
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("TreeUsage(42) mismatch (-want +got):\n%s", diff)
	}
}

// On the host's own /proc: a child started here is in this process's tree.
func TestHostTree(t *testing.T) {
	cmd := exec.Command("sleep", "10")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	pids, err := Proc{}.Tree(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if pids[0] != os.Getpid() || !slices.Contains(pids, cmd.Process.Pid) {
		t.Errorf("Tree(self) = %v, want this process first and sleep's pid %d in it", pids, cmd.Process.Pid)
	}
	u, err := Proc{}.TreeUsage(os.Getpid())
	if err != nil || u.RSS == 0 || u.Anon == 0 || u.Anon > u.RSS {
		t.Errorf("TreeUsage(self) = %+v, %v; want resident memory, anonymous no more than all of it", u, err)
	}
}

func TestComm(t *testing.T) {
	fsys := fstest.MapFS{"7/comm": &fstest.MapFile{Data: []byte("drift-waiting\n")}}
	p := Proc{FS: fsys}
	if got := p.Comm(7); got != "drift-waiting" {
		t.Errorf("Comm(7) = %q, want drift-waiting", got)
	}
	if got := p.Comm(8); got != "" {
		t.Errorf("Comm of a process gone = %q, want \"\"", got)
	}
	if got := (Proc{}).Comm(os.Getpid()); got == "" {
		t.Error("Comm(self) is empty")
	}
}

func TestParent(t *testing.T) {
	p := Proc{FS: fakeProc()}
	if got := p.Parent(42); got != 1 { // the command name holds ") "
		t.Errorf("Parent(42) = %d, want 1", got)
	}
	if got := p.Parent(99); got != 0 {
		t.Errorf("Parent of a process gone = %d, want 0", got)
	}
	if got, want := (Proc{}).Parent(os.Getpid()), os.Getppid(); got != want {
		t.Errorf("Parent(self) = %d, want %d", got, want)
	}
	if p.Exiting(42) || p.Exiting(99) || (Proc{}).Exiting(os.Getpid()) {
		t.Error("Exiting of a live process (flags without PF_EXITING), or of one gone, = true")
	}
	exiting := fstest.MapFS{"7/stat": &fstest.MapFile{Data: []byte("7 (x) Z 1 7 7 0 -1 4194564 0 0\n")}}
	if !(Proc{FS: exiting}).Exiting(7) {
		t.Error("Exiting with PF_EXITING in its flags = false")
	}
}
