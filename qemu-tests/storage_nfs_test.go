package qemutests

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// ganeshaConf exports dir over NFSv4 only (no rpcbind, mountd or lock
// manager needed) to anyone on the lab's private segment.
const ganeshaConf = `NFS_CORE_PARAM {
	Protocols = 4;
	NFS_Port = 2049;
	Enable_NLM = false;
	Enable_RQUOTA = false;
}
NFSV4 {
	Graceless = true;
	RecoveryBackend = fs;
	RecoveryRoot = %[2]s;
}
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
	Export_Id = 1;
	Path = %[1]s;
	Pseudo = /drift;
	Access_Type = RW;
	Squash = No_Root_Squash;
	Protocols = 4;
	Transports = TCP;
	SecType = sys;
	FSAL { Name = VFS; }
}
`

// TestExternalNFS boots two nodes with drift.storage= naming a real NFS
// server (nfs-ganesha with its VFS backend) run on the host side of the
// lab's bridge: both mount it, see each other's files, and the head
// exports nothing.
func TestExternalNFS(t *testing.T) {
	img := image(t)
	ganesha, err := exec.LookPath("ganesha.nfsd")
	if err != nil {
		t.Fatalf("ganesha.nfsd not found: apt-get install nfs-ganesha nfs-ganesha-vfs")
	}
	t.Parallel()
	src := "nfs://" + lab.HostAddr + "/drift"
	l := startLab(t, lab.Config{Image: img, Nodes: 2, KernelArgs: []string{"drift.storage=" + src}})
	for n := 1; n <= l.Nodes(); n++ {
		t.Logf("node %d qemu command line: %s", n, l.CommandLine(n))
	}
	ctx := waitContext(t, 10*time.Minute)

	dir := t.TempDir()
	export, recov := filepath.Join(dir, "export"), filepath.Join(dir, "recovery")
	for _, d := range []string{export, recov} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "ganesha.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(ganeshaConf, export, recov)), 0o644); err != nil {
		t.Fatal(err)
	}
	logFile := filepath.Join(dir, "ganesha.log")
	cmd := l.Command(context.WithoutCancel(ctx), ganesha, "-F", "-f", conf, "-L", logFile, "-p", filepath.Join(dir, "ganesha.pid"), "-N", "NIV_EVENT")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	t.Logf("NFS server: %s", cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nfs-ganesha: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("nfs-ganesha log:\n%s", b)
		}
	})

	if err := l.WaitReady(ctx, nil); err != nil {
		t.Fatalf("wait for 2 nodes: %v", err)
	}
	mounted := regexp.MustCompile(`drift: storage mounted=/cluster from=` + regexp.QuoteMeta(src))
	for n := 1; n <= 2; n++ {
		line, err := l.WaitFor(ctx, n, mounted)
		if err != nil {
			t.Fatalf("node %d never mounted %s: %v", n, src, err)
		}
		t.Logf("node %d: %s", n, line)
	}
	for n := 1; n <= 2; n++ {
		storageExec(ctx, t, l, n, time.Minute, "gosh", "-c", fmt.Sprintf("echo written on node %d > /cluster/node%d.txt", n, n))
	}
	for n := 1; n <= 2; n++ {
		other := 3 - n
		want := fmt.Sprintf("written on node %d\n", other)
		if got := string(storageExec(ctx, t, l, n, time.Minute, "cat", fmt.Sprintf("/cluster/node%d.txt", other)).Stdout); got != want {
			t.Errorf("node %d reads %q from node %d's file, want %q", n, got, other, want)
		}
		if b, err := os.ReadFile(filepath.Join(export, fmt.Sprintf("node%d.txt", n))); err != nil || string(b) != fmt.Sprintf("written on node %d\n", n) {
			t.Errorf("the NFS server's directory holds %q, %v for node %d's file", b, err, n)
		}
	}
	// A program stored on the NFS export runs on a node and maps a file
	// there shared and writable.
	src2, bin := filepath.Join(dir, "mapw.c"), filepath.Join(export, "mapw")
	os.WriteFile(src2, []byte(mapwC), 0o644)
	if out, err := exec.Command("gcc", "-static", "-O2", "-o", bin, src2).CombinedOutput(); err != nil {
		t.Fatalf("gcc -static: %v: %s", err, out)
	}
	storageExec(ctx, t, l, 2, time.Minute, "/cluster/mapw", "/cluster/mapped.dat")
	if b, _ := os.ReadFile(filepath.Join(export, "mapped.dat")); !strings.HasPrefix(string(b), "written through a shared mapping\n") {
		t.Errorf("a program on the NFS export, run on node 2, mapped a file that reads %q on the server", b[:min(len(b), 40)])
	}
	out := string(storageExec(ctx, t, l, 2, time.Minute, "drift", "storage").Stdout)
	t.Logf("drift storage on node 2:\n%s", out)
	if !strings.Contains(out, "external storage: "+src) || strings.Contains(out, " exports /") {
		t.Errorf("drift storage does not show the external source alone")
	}
	if strings.Count(out, src+"  ok") != 2 {
		t.Errorf("drift storage lists fewer than 2 healthy mounts of %s", src)
	}
}
