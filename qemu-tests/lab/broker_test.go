package lab

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/labport"
)

// fakeNode is a node without a VM: a process named like QEMU, and a lab
// port (a unix socket, as QEMU's chardev) served by a real labport.Server.
type fakeNode struct {
	qemu *exec.Cmd
	stop func() // QEMU exits: its process and its sockets go
}

func startFakeNode(t *testing.T, dir string) (*Lab, *fakeNode) {
	t.Helper()
	// qemuRunning wants "qemu-system" in the command line.
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep program")
	}
	b, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	fakeQEMU := filepath.Join(dir, "qemu-system-fake")
	if err := os.WriteFile(fakeQEMU, b, 0o755); err != nil {
		t.Fatal(err)
	}
	qemu := exec.Command(fakeQEMU, "600")
	if err := qemu.Start(); err != nil {
		t.Fatal(err)
	}

	ns := nodeState{Num: 1, PID: qemu.Process.Pid, LabSock: filepath.Join(dir, "node1.lab.sock"), PortSock: filepath.Join(dir, "node1.port.sock")}
	ln, err := net.Listen("unix", ns.PortSock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // one host at a time, as QEMU's chardev
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			sctx, scancel := context.WithCancel(ctx)
			stop := context.AfterFunc(ctx, func() { c.Close() })
			(&labport.Server{Logger: slog.New(slog.DiscardHandler)}).Serve(sctx, eofOnce{c, scancel})
			stop()
			scancel()
			c.Close()
		}
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			qemu.Process.Kill()
			qemu.Wait()
			cancel()
			ln.Close()
			wg.Wait()
		})
	}
	t.Cleanup(stop)

	l := &Lab{dir: dir, st: &state{Nodes: []nodeState{ns}}, log: slog.New(slog.DiscardHandler),
		dieWithParent: true, cmds: map[int]*exec.Cmd{}, brokers: map[int]chan struct{}{}, ready: map[int]Ready{}}
	t.Cleanup(func() { l.stopBroker(context.Background(), 1) })
	return l, &fakeNode{qemu: qemu, stop: stop}
}

// eofOnce ends a Server's Serve when the host disconnects, as the test's
// accept loop then takes the next host.
type eofOnce struct {
	net.Conn
	cancel context.CancelFunc
}

func (e eofOnce) Read(p []byte) (int, error) {
	n, err := e.Conn.Read(p)
	if errors.Is(err, io.EOF) {
		e.cancel()
	}
	return n, err
}

// TestBrokerProcess starts a node's broker as drift-lab does (this test
// binary, run again), runs commands side by side through it, and checks
// that a broker that dies is started again and one whose QEMU exits ends.
func TestBrokerProcess(t *testing.T) {
	dir, err := os.MkdirTemp("", "brk") // short: unix socket paths
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, node := startFakeNode(t, dir)
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(l.nodePath(1, ".broker.log"))
			t.Logf("broker log:\n%s", b)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := l.startBroker(ctx, 1); err != nil {
		t.Fatal(err)
	}

	// Three commands that each wait until all three run.
	var wg sync.WaitGroup
	for _, name := range []string{"a", "b", "c"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out strings.Builder
			st, err := l.Run(ctx, 1, labport.Command{
				Argv:   []string{"sh", "-c", `touch "$0/$1"; for f in a b c; do until [ -e "$0/$f" ]; do sleep 0.05; done; done; echo "$1"`, dir, name},
				Stdout: &out,
			})
			if err != nil || st.Code != 0 || out.String() != name+"\n" {
				t.Errorf("Run(%s) = %v, %v, %q, want it to see the others run", name, st, err, out.String())
			}
		}()
	}
	wg.Wait()

	pid := readPIDFile(l.nodePath(1, ".broker.pid"))
	if !brokerRunning(pid) {
		t.Fatalf("broker pid file holds %d, not a running broker", pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); brokerRunning(pid) && time.Now().Before(deadline); {
		time.Sleep(pollInterval)
	}
	if res, err := l.Exec(ctx, 1, "echo", "again"); err != nil || string(res.Stdout) != "again\n" {
		t.Errorf("Exec after the broker was killed = %+v, %v, want a new broker to run it", res, err)
	}

	pid = readPIDFile(l.nodePath(1, ".broker.pid"))
	node.stop()
	for deadline := time.Now().Add(5 * time.Second); brokerRunning(pid) && time.Now().Before(deadline); {
		time.Sleep(pollInterval)
	}
	if brokerRunning(pid) {
		t.Errorf("broker %d still runs 5s after its QEMU exited", pid)
	}
	if pid := readPIDFile(l.nodePath(1, ".broker.pid")); pid != 0 {
		t.Errorf("broker pid file still holds %d after its QEMU exited", pid)
	}
	if _, err := l.Exec(ctx, 1, "true"); err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("Exec on a node whose QEMU exited: %v, want it to say the node is not running", err)
	}
}
