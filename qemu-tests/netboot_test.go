package qemutests

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// startPXELab starts a PXE lab (head from kernel + ISO CD, diskless
// workers) for the test and stops it when the test ends.
func startPXELab(t *testing.T, cfg lab.PXEConfig) *lab.Lab {
	t.Helper()
	acquireVMs(t, 1+len(cfg.Workers))
	dir := cfg.StateDir // preset when the test must know the MACs first (pxeStateDir)
	if dir == "" {
		dir = pxeStateDir(t)
	}
	cfg.StateDir = dir
	if cfg.Accel == "" {
		cfg.Accel = testAccel(t, cfg.Image)
	}
	cfg.Logger = testLogger(t)
	cfg.DieWithParent = true
	var l *lab.Lab
	t.Cleanup(func() {
		if l != nil {
			if err := l.Down(context.Background()); err != nil {
				t.Errorf("stop lab: %v", err)
			}
		}
		if t.Failed() {
			t.Logf("lab state and console logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	ctx := waitContext(t, 5*time.Minute)
	var err error
	l, err = lab.StartPXE(ctx, cfg)
	if err != nil {
		t.Fatalf("start pxe lab: %v", err)
	}
	for n := 1; n <= l.Nodes(); n++ {
		t.Logf("node %d qemu command line: %s", n, l.CommandLine(n))
	}
	return l
}

// pxeStateDir is a new state directory for startPXELab: a lab's MACs
// follow from it (lab.NodeMAC), so a test can name them before it starts.
func pxeStateDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dpxe-")
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// waitWorkers waits for every node's ready line and checks the roles.
func waitWorkers(t *testing.T, l *lab.Lab, img lab.Image, d time.Duration) {
	t.Helper()
	ctx := waitContext(t, d)
	start := time.Now()
	if err := l.WaitReady(ctx, func(r lab.Ready) {
		t.Logf("ready after %s: node %d: %s", time.Since(start).Round(time.Second), r.Node, r.Line)
	}); err != nil {
		t.Fatalf("wait for the diskless workers: %v", err)
	}
	for n := 1; n <= l.Nodes(); n++ {
		r, _ := l.Ready(n)
		role := "worker"
		if n == 1 {
			role = "head"
		}
		checkReady(t, l, img, r, role)
	}
}

// headView asks the head for drift netboot --json and drift nodes --json
// until every worker is a member and joined, or d passes.
func headView(t *testing.T, l *lab.Lab, d time.Duration) (api.Netboot, []api.Node) {
	t.Helper()
	ctx := waitContext(t, d)
	var (
		nb    api.Netboot
		nodes []api.Node
	)
	for {
		res := execOK(ctx, t, l, 1, "drift", "netboot", "--json")
		if err := json.Unmarshal(res.Stdout, &nb); err != nil {
			t.Fatalf("drift netboot --json: %v\n%s", err, res.Stdout)
		}
		res = execOK(ctx, t, l, 1, "drift", "nodes", "--json")
		if err := json.Unmarshal(res.Stdout, &nodes); err != nil {
			t.Fatalf("drift nodes --json: %v\n%s", err, res.Stdout)
		}
		if allJoined(l, nb, nodes) {
			return nb, nodes
		}
		select {
		case <-ctx.Done():
			t.Errorf("not every worker joined in time: netboot %+v; nodes %+v", nb, nodes)
			return nb, nodes
		case <-time.After(3 * time.Second):
		}
	}
}

func allJoined(l *lab.Lab, nb api.Netboot, nodes []api.Node) bool {
	alive := map[string]bool{}
	for _, n := range nodes {
		alive[n.Name] = n.State == "alive"
	}
	stage := map[string]string{}
	for _, m := range nb.Machines {
		stage[m.MAC] = m.Stage
	}
	for n := 2; n <= l.Nodes(); n++ {
		if !alive[lab.NodeHostname(l.MAC(n))] || stage[l.MAC(n)] != "joined" {
			return false
		}
	}
	return true
}

func machine(nb api.Netboot, mac string) api.NetbootMachine {
	for _, m := range nb.Machines {
		if m.MAC == mac {
			return m
		}
	}
	return api.NetbootMachine{}
}

// TestNetboot: the head, booted with the ISO as its boot medium, numbers
// the segment and network-boots three diskless workers: iPXE ROMs under
// SeaBIOS (virtio-net, e1000) straight to HTTP, and OVMF's own UEFI PXE
// client through snponly.efi over TFTP.
func TestNetboot(t *testing.T) {
	img := image(t)
	t.Parallel()
	workers := []lab.PXEWorker{{NIC: lab.NICVirtio}, {NIC: lab.NICE1000}, {NIC: lab.NICVirtio, UEFI: true}}
	// drift.enroll=auto: every worker is given the key without a command
	// (TestEnroll covers approve and the MAC list).
	l := startPXELab(t, lab.PXEConfig{Config: lab.Config{Image: img}, Workers: workers, HeadArgs: []string{"drift.enroll=auto"}})
	head, err := l.WaitFor(t.Context(), 1, lab.NetbootRE)
	if err != nil || !strings.Contains(head, "dhcp=server") || !strings.Contains(head, "medium=/dev/sr0") {
		t.Errorf("head's netboot line %q (%v), want dhcp=server from /dev/sr0", head, err)
	}
	waitWorkers(t, l, img, 12*time.Minute)
	nb, _ := headView(t, l, 2*time.Minute)
	for n := 2; n <= l.Nodes(); n++ {
		m := machine(nb, l.MAC(n))
		want := "bios"
		if workers[n-2].UEFI {
			want = "uefi-x64"
		}
		if m.Arch != want || m.Node != lab.NodeHostname(l.MAC(n)) {
			t.Errorf("node %d in drift netboot: %+v, want arch %s, node %s", n, m, want, lab.NodeHostname(l.MAC(n)))
		}
	}
	if nb.Mode != "server" || nb.TFTPBytes < 100_000 || nb.HTTPBytes < 3*10<<20 {
		t.Errorf("drift netboot: mode %s, %d bytes over TFTP, %d over HTTP; want server, snponly.efi over TFTP, 3 kernels and initramfs over HTTP",
			nb.Mode, nb.TFTPBytes, nb.HTTPBytes)
	}
	res := execOK(waitContext(t, time.Minute), t, l, 1, "drift", "netboot")
	t.Logf("drift netboot on the head:\n%s", res.Stdout)
}

// TestNetbootProxy: a real dnsmasq numbers the segment (address-only,
// no PXE options); the head sees it, serves proxyDHCP and hands out no
// address, and the diskless workers boot with dnsmasq's addresses.
func TestNetbootProxy(t *testing.T) {
	img := image(t)
	dnsmasq, err := exec.LookPath("dnsmasq")
	if err != nil {
		t.Fatalf("dnsmasq not installed: apt-get install dnsmasq-base (%v)", err)
	}
	t.Parallel()
	leases := filepath.Join(t.TempDir(), "dnsmasq.leases")
	var dm *exec.Cmd
	start := func(l *lab.Lab) error {
		dm = l.Command(context.Background(), dnsmasq, "--no-daemon", "--conf-file=/dev/null", "--port=0",
			"--interface="+l.Bridge(), "--bind-interfaces", "--dhcp-range=10.77.0.100,10.77.0.150,255.255.255.0,1h",
			"--dhcp-leasefile="+leases, "--dhcp-authoritative", "--log-dhcp")
		dm.Stdout, dm.Stderr = testWriter{t}, testWriter{t}
		dm.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		t.Logf("dnsmasq: %s", strings.Join(dm.Args, " "))
		return dm.Start()
	}
	t.Cleanup(func() {
		if dm != nil && dm.Process != nil {
			dm.Process.Kill()
			dm.Wait()
		}
	})
	workers := []lab.PXEWorker{{NIC: lab.NICVirtio}, {NIC: lab.NICE1000}}
	l := startPXELab(t, lab.PXEConfig{Config: lab.Config{Image: img}, Workers: workers, OnNetwork: start, HeadArgs: []string{"drift.enroll=auto"}})
	head, err := l.WaitFor(t.Context(), 1, lab.NetbootRE)
	if err != nil || !strings.Contains(head, "dhcp=proxy") {
		t.Fatalf("head's netboot line %q (%v), want dhcp=proxy", head, err)
	}
	waitWorkers(t, l, img, 10*time.Minute)
	rng := netip.MustParsePrefix("10.77.0.0/24")
	for n := 1; n <= l.Nodes(); n++ {
		r, _ := l.Ready(n)
		a, err := netip.ParseAddr(r.Addr)
		if err != nil || !rng.Contains(a) || a.As4()[3] < 100 || a.As4()[3] > 150 {
			t.Errorf("node %d has address %s, want one of dnsmasq's 10.77.0.100-150", n, r.Addr)
		}
	}
	nb, _ := headView(t, l, 2*time.Minute)
	if nb.Mode != "proxy" {
		t.Errorf("drift netboot mode %q, want proxy", nb.Mode)
	}
	b, err := os.ReadFile(leases)
	if err != nil {
		t.Fatalf("dnsmasq lease file: %v", err)
	}
	for n := 1; n <= l.Nodes(); n++ {
		if !strings.Contains(string(b), l.MAC(n)) {
			t.Errorf("dnsmasq's leases do not name node %d (%s):\n%s", n, l.MAC(n), b)
		}
	}
	// The head handed out nothing: it has no lease file of its own.
	res, err := labport.Exec(waitContext(t, time.Minute), l.LabSock(1), labport.Request{Argv: []string{"cat", "/var/lib/drift/dhcp-leases.json"}})
	if err == nil && res.ExitCode == 0 && strings.Contains(string(res.Stdout), "10.77.") {
		t.Errorf("the head handed out addresses in proxy mode: %s", res.Stdout)
	}
}
