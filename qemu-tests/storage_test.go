package qemutests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// headExport is the shared storage every node of a lab mounts: the head's
// 9P export at its DHCP server address.
const headExport = "9p://10.77.0.1:5640"

var mountedRE = regexp.MustCompile(`drift: storage mounted=/cluster from=` + regexp.QuoteMeta(headExport))

// headDir is the head's export as the head itself has it at /cluster:
// the directory, bound, not its own 9P server over loopback.
const headDir = "/var/lib/drift/data"

var headMountedRE = regexp.MustCompile(`drift: storage mounted=/cluster from=` + regexp.QuoteMeta(headDir))

// mountedREOf is node n's event for /cluster mounted: the head binds its
// export, the others mount it.
func mountedREOf(n int) *regexp.Regexp {
	if n == 1 {
		return headMountedRE
	}
	return mountedRE
}

// testMounted: every node mounts the head's export.
func testMounted(ctx context.Context, t *testing.T, c *cluster) {
	for n := 1; n <= 3; n++ {
		line, err := c.l.WaitFor(ctx, n, mountedREOf(n))
		if err != nil {
			t.Fatalf("node %d never mounted the head's export: %v", n, err)
		}
		t.Logf("node %d, %s after the last ready line: %s", n, since(c.lastReady), line)
	}
}

// testTmpfsWarning: the head's export is a tmpfs, and both its console
// and drift storage say that its data is lost at power-off.
func testTmpfsWarning(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	if _, err := l.WaitFor(ctx, 1, regexp.MustCompile(`drift: storage: WARNING .*tmpfs.*lost at power-off`)); err != nil {
		t.Errorf("head console lacks the tmpfs warning: %v", err)
	}
	out := string(storageExec(ctx, t, l, 2, time.Minute, "drift", "storage").Stdout)
	t.Logf("drift storage on node 2:\n%s", out)
	if n := strings.Count(out, headExport+"  ok"); n != 2 {
		t.Errorf("drift storage lists %d healthy mounts of %s, want 2 (the workers)", n, headExport)
	}
	if n := strings.Count(out, headDir+"  ok"); n != 1 {
		t.Errorf("drift storage lists %d healthy mounts of %s, want 1 (the head's own)", n, headDir)
	}
	if !strings.Contains(out, "WARNING: the shared storage is in memory (tmpfs)") {
		t.Errorf("drift storage does not say the tmpfs loses its data")
	}
}

// testReadBack: a file written on worker 2 reads back byte for byte
// everywhere.
func testReadBack(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	storageExec(ctx, t, l, 3, time.Minute, "dd", "if=/dev/urandom", "of=/cluster/w2.bin", "bs=1024", "count=300")
	want := storageExec(ctx, t, l, 3, time.Minute, "cat", "/cluster/w2.bin").Stdout
	if len(want) != 300<<10 {
		t.Fatalf("worker 2 reads back %d bytes of what it wrote, want %d", len(want), 300<<10)
	}
	for _, n := range []int{2, 1} {
		got := storageExec(ctx, t, l, n, time.Minute, "cat", "/cluster/w2.bin").Stdout
		if !bytes.Equal(got, want) {
			t.Errorf("node %d reads %d bytes that differ from worker 2's %d", n, len(got), len(want))
		}
	}
	storageExec(ctx, t, l, 3, time.Minute, "rm", "/cluster/w2.bin")
}

// testBigChecksum: a 100 MB file copied to /cluster on worker 1 has the
// same sha256 on all three.
func testBigChecksum(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	storageExec(ctx, t, l, 2, 2*time.Minute, "dd", "if=/dev/urandom", "of=/tmp/big", "bs=1M", "count=100")
	want := shasum(ctx, t, l, 2, "/tmp/big")
	began := time.Now()
	storageExec(ctx, t, l, 2, 5*time.Minute, "cp", "/tmp/big", "/cluster/big")
	t.Logf("100 MB copied to /cluster in %s", time.Since(began).Round(100*time.Millisecond))
	storageExec(ctx, t, l, 2, time.Minute, "rm", "/tmp/big")
	for n := 1; n <= 3; n++ {
		if got := shasum(ctx, t, l, n, "/cluster/big"); got != want {
			t.Errorf("node %d: sha256 of /cluster/big = %s, want %s", n, got, want)
		}
	}
	storageExec(ctx, t, l, 3, time.Minute, "rm", "/cluster/big")
}

// testAppend: three nodes appending to one file at once lose no line.
func testAppend(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	const lines = 300
	// drift-workload writes each line with one write(2); the shell
	// opens the file with O_APPEND, O_CREAT: on every node at once.
	var wg sync.WaitGroup
	for n := 1; n <= 3; n++ {
		wg.Go(func() {
			argv := []string{"gosh", "-c", fmt.Sprintf("drift-workload counter -n %d -every 1ms >> /cluster/append.log", lines)}
			ectx, cancel := context.WithTimeout(ctx, 3*time.Minute)
			defer cancel()
			res, err := labport.Exec(ectx, l.LabSock(n), labport.Request{Argv: argv})
			if err == nil && res.ExitCode != 0 {
				err = fmt.Errorf("exit %d: %s", res.ExitCode, res.Stderr)
			}
			if err != nil {
				t.Errorf("node %d: %q: %v", n, argv, err)
			}
		})
	}
	wg.Wait()
	out := storageExec(ctx, t, l, 1, time.Minute, "cat", "/cluster/append.log").Stdout
	storageExec(ctx, t, l, 1, time.Minute, "rm", "/cluster/append.log")
	count := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		count[line]++
	}
	for i := 1; i <= lines; i++ {
		if c := count[strconv.Itoa(i)]; c != 3 {
			t.Errorf("line %d appears %d times, want 3 (one per node)", i, c)
		}
		delete(count, strconv.Itoa(i))
	}
	if len(count) > 0 {
		t.Errorf("torn or foreign lines in the file: %v", count)
	}
}

// testForeignMount boots a node with another key: the 9P mount a member
// makes by hand works, the same mount from that node is refused, and the
// head logs why. The node is stopped at the end.
func testForeignMount(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	n, r := c.addForeign(ctx, t)
	mount := []string{"mount", "-t", "9p", "-o", "trans=tcp,port=5640,version=9p2000.L,cache=none", "10.77.0.1", "/mnt/steal"}
	// The same mount by hand on a member works: the refusal below is
	// the server's, not the command's.
	const mark = "on /cluster, seen through /mnt/steal\n"
	storageExec(ctx, t, l, 2, time.Minute, "gosh", "-c", "echo 'on /cluster, seen through /mnt/steal' > /cluster/steal.txt")
	storageExec(ctx, t, l, 2, time.Minute, "mkdir", "-p", "/mnt/steal")
	storageExec(ctx, t, l, 2, time.Minute, mount...)
	if got := string(storageExec(ctx, t, l, 2, time.Minute, "cat", "/mnt/steal/steal.txt").Stdout); got != mark {
		t.Errorf("a member's own 9P mount of the head's export reads %q from steal.txt, want %q", got, mark)
	}
	storageExec(ctx, t, l, 2, time.Minute, "umount", "/mnt/steal")
	storageExec(ctx, t, l, 2, time.Minute, "rm", "/cluster/steal.txt")

	storageExec(ctx, t, l, n, time.Minute, "mkdir", "-p", "/mnt/steal")
	// A node loads the file systems' modules in the background after
	// ready: wait for 9P, so that the mount reaches the head.
	for deadline := time.Now().Add(2 * time.Minute); ; {
		if labExec(ctx, t, l, n, time.Minute, "grep", "-qw", "9p", "/proc/filesystems").ExitCode == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %d: no 9p in /proc/filesystems 2 minutes after ready", n)
		}
		time.Sleep(time.Second)
	}
	res := labExec(ctx, t, l, n, time.Minute, mount...)
	if res.ExitCode == 0 {
		ls := labExec(ctx, t, l, n, time.Minute, "ls", "/mnt/steal")
		t.Fatalf("a node with another key mounted the head's export (it lists %q)", ls.Stdout)
	}
	t.Logf("mount from the foreign node failed as it must: %s", bytes.TrimSpace(res.Stderr))
	refused := regexp.MustCompile(`refused storage connection from ` + regexp.QuoteMeta(r.Addr) + `:\d+: not a cluster member`)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := l.WaitFor(wctx, 1, refused); err != nil {
		t.Errorf("head did not log the refusal of %s: %v", r.Addr, err)
	}
	if err := l.StopNode(ctx, n); err != nil {
		t.Errorf("stop the foreign node: %v", err)
	}
}

// testHeadReboot reboots the head onto a DRIFT-DATA disk, and again: the
// workers' /cluster comes back by itself and the file written before the
// reboot is still there. Last: the cluster's storage is the disk after.
func testHeadReboot(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	c.whole(ctx, t)
	disk := dataDisk(t)
	if err := l.StopNode(ctx, 1); err != nil {
		t.Fatalf("stop the head: %v", err)
	}
	if err := l.AttachDisk(1, disk); err != nil {
		t.Fatal(err)
	}
	bootHead(ctx, t, l)
	line, err := l.WaitFor(ctx, 1, regexp.MustCompile(`drift: storage: exporting /var/lib/drift/data \(ext4 on /dev/vda, label DRIFT-DATA\)`))
	if err != nil {
		t.Fatalf("head does not export its DRIFT-DATA disk: %v", err)
	}
	t.Logf("head: %s", line)
	const content = "written before the reboot\n"
	storageExec(ctx, t, l, 1, time.Minute, "gosh", "-c", "echo 'written before the reboot' > /cluster/persist.txt && sync")
	waitFile(ctx, t, l, []int{2, 3}, "/cluster/persist.txt", content, 3*time.Minute)

	// Power cut: the file must be on the disk, not in a cache.
	if err := l.StopNode(ctx, 1); err != nil {
		t.Fatalf("stop the head: %v", err)
	}
	bootHead(ctx, t, l)
	waitFile(ctx, t, l, []int{1, 2, 3}, "/cluster/persist.txt", content, 3*time.Minute)

	out := string(storageExec(ctx, t, l, 3, time.Minute, "drift", "storage").Stdout)
	t.Logf("drift storage on node 3:\n%s", out)
	if !strings.Contains(out, "ext4 on /dev/vda (label DRIFT-DATA)") || strings.Contains(out, "WARNING") {
		t.Errorf("drift storage does not show the head's DRIFT-DATA disk (or still warns)")
	}
}

// bootHead starts the stopped head and waits until it is ready and has
// mounted its own export.
func bootHead(ctx context.Context, t *testing.T, l *lab.Lab) {
	t.Helper()
	if err := l.StartNode(ctx, 1); err != nil {
		t.Fatalf("start the head: %v", err)
	}
	t.Logf("head qemu command line: %s", l.CommandLine(1))
	if _, err := l.WaitReadyNode(ctx, 1); err != nil {
		t.Fatalf("head after reboot: %v", err)
	}
	if _, err := l.WaitFor(ctx, 1, headMountedRE); err != nil {
		t.Fatalf("head after reboot never mounted its export: %v", err)
	}
}

// waitFile polls nodes until each reads content from path, which they do
// once their /cluster came back.
func waitFile(ctx context.Context, t *testing.T, l *lab.Lab, nodes []int, path, content string, limit time.Duration) {
	t.Helper()
	start := time.Now()
	for _, n := range nodes {
		for {
			res := labExec(ctx, t, l, n, 30*time.Second, "cat", path)
			if res.ExitCode == 0 && string(res.Stdout) == content {
				t.Logf("node %d reads %s after %s", n, path, time.Since(start).Round(100*time.Millisecond))
				break
			}
			if time.Since(start) > limit {
				t.Fatalf("node %d: %s not readable within %s: exit %d, %q %s", n, path, limit, res.ExitCode, res.Stdout, res.Stderr)
			}
			time.Sleep(2 * time.Second)
		}
	}
}

// dataDisk makes a 64 MB ext4 image labelled DRIFT-DATA.
func dataDisk(t *testing.T) string {
	t.Helper()
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Fatalf("mkfs.ext4 not found: apt-get install e2fsprogs")
	}
	p := filepath.Join(t.TempDir(), "data.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 64<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mkfs, "-q", "-F", "-L", "DRIFT-DATA", p).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return p
}

// shasum returns the sha256 of path on node n (u-root's shasum).
func shasum(ctx context.Context, t *testing.T, l *lab.Lab, n int, path string) string {
	t.Helper()
	out := storageExec(ctx, t, l, n, 5*time.Minute, "shasum", "-a", "256", path).Stdout
	sum, _, _ := strings.Cut(string(out), " ")
	if len(sum) != 64 {
		t.Fatalf("node %d: shasum %s printed %q", n, path, out)
	}
	return sum
}

// labExec runs argv on node n with a time limit and returns what it did.
func labExec(ctx context.Context, t *testing.T, l *lab.Lab, n int, limit time.Duration, argv ...string) *labport.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res, err := labport.Exec(ctx, l.LabSock(n), labport.Request{Argv: argv})
	if err != nil {
		t.Fatalf("node %d: exec %q: %v", n, argv, err)
	}
	return res
}

// storageExec is labExec that fails the test unless argv exits 0.
func storageExec(ctx context.Context, t *testing.T, l *lab.Lab, n int, limit time.Duration, argv ...string) *labport.Result {
	t.Helper()
	res := labExec(ctx, t, l, n, limit, argv...)
	if res.ExitCode != 0 {
		t.Fatalf("node %d: exec %q exited %d: %s", n, argv, res.ExitCode, res.Stderr)
	}
	return res
}
