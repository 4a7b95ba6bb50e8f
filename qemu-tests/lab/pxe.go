package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"time"
)

// PXE labs: node 1 is the head, booted from the image's kernel with
// drift.role=head and with the ISO in its CD drive, which is the boot
// medium it serves the image from (as on a real machine booted from the
// ISO's "drift head" entry; the ISO's menu defaults to "drift node", so
// the lab loads the head's kernel itself rather than type at the menu).
// The other nodes have no disk: their firmware boots from the network.

// PXEWorker is how one diskless node boots.
type PXEWorker struct {
	NIC NIC // "": NICVirtio
	// UEFI boots the node under OVMF with the NIC's option ROM removed, so
	// that the firmware's own PXE client boots (a plain UEFI PXE client:
	// ipxe.efi over TFTP, then iPXE's script over HTTP). false: SeaBIOS
	// with QEMU's iPXE option ROM, which is iPXE already (straight to HTTP).
	UEFI bool
}

// PXEConfig describes a PXE lab.
type PXEConfig struct {
	// Config is the lab; Nodes, Boot and NIC are ignored (the head boots
	// its kernel with the ISO as CD, with a virtio NIC).
	Config
	// Workers are the diskless nodes 2, 3...
	Workers []PXEWorker
	// HeadArgs are appended to the head's kernel command line (e.g.
	// drift.dhcp=proxy).
	HeadArgs []string
	// OnNetwork, if not nil, runs once the lab's network exists and before
	// the head boots (e.g. to start another DHCP server on the segment).
	OnNetwork func(*Lab) error
}

// NetbootRE matches the head's line saying it serves network boot.
var NetbootRE = regexp.MustCompile(`drift: netboot: serving `)

// StartPXE boots the head, waits until it serves network boot, then
// powers the diskless workers on. It does not wait for the workers.
// As with Start, a failure leaves nothing running.
func StartPXE(ctx context.Context, cfg PXEConfig) (*Lab, error) {
	c := cfg.Config
	c.Nodes, c.Boot, c.NIC, c.NoHead = 1, BootKernel, NICVirtio, false
	if cfg.Image.ISO == "" {
		return nil, fmt.Errorf("start pxe lab: image in %s has no ISO (the head's boot medium): rebuild it with make image", cfg.Image.Dir)
	}
	for _, w := range cfg.Workers {
		if w.UEFI {
			if _, err := os.Stat(filepath.Join(ovmfDir(c), "OVMF_CODE_4M.fd")); err != nil {
				return nil, fmt.Errorf("start pxe lab: %w", ErrNoOVMF)
			}
		}
	}
	c.NodeArgs = map[int][]string{1: cfg.HeadArgs}
	l, err := Start(ctx, c)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Lab, error) {
		if derr := l.Down(context.WithoutCancel(ctx)); derr != nil {
			l.log.Error("stop lab after failed start", "err", derr)
		}
		return nil, err
	}
	// Start booted the head without its CD: add the CD and boot it again
	// (before OnNetwork, so nothing it starts sees a head come and go).
	l.Kill(1) // not booted yet: no need to wait for a clean quit
	if err := l.StopNode(ctx, 1); err != nil {
		return fail(err)
	}
	l.mu.Lock()
	head := &l.st.Nodes[0]
	head.Argv = append(head.Argv, cdromArgs(cfg.Image.ISO)...)
	argv := head.Argv
	l.mu.Unlock()
	if err := os.WriteFile(l.nodePath(1, ".cmdline"), []byte(reproScript(l.st.NetNS, 1, shellQuote(argv))), 0o644); err != nil {
		return fail(err)
	}
	if cfg.OnNetwork != nil {
		if err := cfg.OnNetwork(l); err != nil {
			return fail(fmt.Errorf("start pxe lab: %w", err))
		}
	}
	if err := l.launch(ctx, 1); err != nil {
		return fail(fmt.Errorf("start head: %w", err))
	}
	if _, err := l.WaitReadyNode(ctx, 1); err != nil {
		return l, err
	}
	if _, err := l.WaitFor(ctx, 1, NetbootRE); err != nil {
		return l, err
	}
	for _, w := range cfg.Workers {
		if _, err := l.AddPXE(ctx, w, ovmfDir(c)); err != nil {
			return l, err
		}
	}
	return l, nil
}

func ovmfDir(c Config) string {
	if c.OVMFDir == "" {
		return "/usr/share/OVMF"
	}
	return c.OVMFDir
}

// AddPXE powers on one more diskless node that boots from the network,
// and returns its number. ovmf is the OVMF directory (UEFI nodes).
func (l *Lab) AddPXE(ctx context.Context, w PXEWorker, ovmf string) (int, error) {
	l.mu.Lock()
	n := len(l.st.Nodes) + 1
	st := l.st
	l.mu.Unlock()
	if w.NIC == "" {
		w.NIC = NICVirtio
	}
	for _, c := range tapCommands(st.NetNS, n) {
		if err := ip(ctx, c...); err != nil {
			return 0, fmt.Errorf("add pxe node %d: %w", n, err)
		}
	}
	ns := nodeState{
		Num: n, Role: "worker", MAC: NodeMAC(labID(l.dir), n), Tap: tapName(n),
		ConsoleSock: l.nodePath(n, ".console.sock"), ConsoleLog: l.nodePath(n, ".console.log"),
		LabSock: l.nodePath(n, ".lab.sock"), PortSock: l.nodePath(n, ".port.sock"), QMPSock: l.nodePath(n, ".qmp.sock"),
		QEMULog: l.nodePath(n, ".qemu.log"), PIDFile: l.nodePath(n, ".pid"),
	}
	// No Tap and no boot mode: args() adds neither a NIC nor a boot device.
	spec := vmSpec{Node: n, Accel: st.Accel, MemoryMB: st.MemoryMB,
		ConsoleSock: ns.ConsoleSock, ConsoleLog: ns.ConsoleLog, PortSock: ns.PortSock, QMPSock: ns.QMPSock, PIDFile: ns.PIDFile}
	args := append(spec.args(), pxeArgs(w, ns.Tap, ns.MAC)...)
	if w.UEFI {
		vars := l.nodePath(n, ".OVMF_VARS.fd")
		if err := copyFile(vars, filepath.Join(ovmf, "OVMF_VARS_4M.fd")); err != nil {
			return 0, err
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+filepath.Join(ovmf, "OVMF_CODE_4M.fd"),
			"-drive", "if=pflash,format=raw,unit=1,file="+vars)
	}
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return 0, ErrNoIP
	}
	ns.Argv = append([]string{ipPath, "netns", "exec", st.NetNS, st.QEMU}, args...)
	if err := os.WriteFile(l.nodePath(n, ".cmdline"), []byte(reproScript(st.NetNS, n, shellQuote(ns.Argv))), 0o644); err != nil {
		return 0, err
	}
	l.mu.Lock()
	l.st.Nodes = append(l.st.Nodes, ns)
	l.mu.Unlock()
	if err := l.launch(ctx, n); err != nil {
		return 0, fmt.Errorf("add pxe node %d: %w", n, err)
	}
	return n, nil
}

// pxeArgs are a diskless node's NIC, first in the boot order. Under
// SeaBIOS QEMU's default option ROM for the model (pxe-e1000.rom,
// efi-virtio.rom: iPXE) does the network boot; under UEFI the ROM is
// left out so that OVMF's own PXE client boots (it drives virtio-net
// itself; an e1000 without its ROM has no UEFI driver).
func pxeArgs(w PXEWorker, tap, mac string) []string {
	dev := w.NIC.model() + ",netdev=net0,mac=" + mac + ",bootindex=1"
	if w.UEFI && w.NIC.model() == NICVirtio.model() {
		dev += ",romfile="
	}
	return []string{
		"-netdev", "tap,id=net0,ifname=" + tap + ",script=no,downscript=no",
		"-device", dev,
	}
}

// PXEWorkers is n diskless workers for drift-lab up --pxe: alternately
// virtio-net and e1000 under SeaBIOS, and the third one under UEFI.
func PXEWorkers(n int) []PXEWorker {
	ws := make([]PXEWorker, n)
	for i := range ws {
		switch i % 3 {
		case 0:
			ws[i] = PXEWorker{NIC: NICVirtio}
		case 1:
			ws[i] = PXEWorker{NIC: NICE1000}
		case 2:
			ws[i] = PXEWorker{NIC: NICVirtio, UEFI: true}
		}
	}
	return ws
}

// PXEReadyTimeout is a generous wait for a diskless TCG node: firmware,
// DHCP, iPXE and a 30 MB download before the kernel even starts.
const PXEReadyTimeout = 5 * time.Minute
