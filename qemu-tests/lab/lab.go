// Package lab boots a cluster of drift nodes as QEMU VMs on one host, for
// drift-lab (a developer's cluster on a laptop) and for the scenario tests
// in qemu-tests. The VMs share one private L2 segment: a bridge inside a
// network namespace the lab creates, one tap per VM, so nothing leaves the
// host. A lab is described by files in its state directory (lab.json,
// sockets, console logs), so one process can start it and others can
// inspect, drive and stop it; QEMU processes outlive the process that
// started them.
//
// Waiting is done on console events: driftd prints one line per event,
// starting "drift: ", and the lab follows each VM's console log.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/driftcluster/drift/imagebuild"
)

// Errors a caller can act on.
var (
	ErrNoQEMU  = errors.New("qemu-system-x86_64 not found: install it with apt-get install qemu-system-x86")
	ErrNoOVMF  = errors.New("OVMF firmware not found: install it with apt-get install ovmf")
	ErrRunning = errors.New("a lab is already running")
)

// Defaults.
const (
	DefaultMemoryMB = 512
	// quitGrace is how long Down waits after asking QEMU to quit before
	// killing it.
	quitGrace = 5 * time.Second
	// tailLinesOnError is how much console an error carries.
	tailLinesOnError = 30
	// maxSockPath is the longest unix socket path Linux accepts.
	maxSockPath = 107
)

// ReadyRE matches driftd's ready line.
var ReadyRE = regexp.MustCompile(regexp.QuoteMeta(ReadyPrefix))

// Image is what a lab's nodes boot.
type Image struct {
	Dir       string // directory the image was read from; informational
	Version   string // drift version in the image
	Kernel    string // kernel path, for BootKernel
	Initramfs string // initramfs path, for BootKernel
	// KeyInitramfs is the archive that holds only the cluster key, loaded
	// before Initramfs (the ISO's menus load both; Start concatenates them
	// for BootKernel); "": an image whose initramfs carries the key.
	KeyInitramfs string
	ISO          string // hybrid ISO path, for BootISO, BootISOUEFI and BootUSB
	Cmdline      string // base kernel command line (consoles), for BootKernel
}

// LoadImage reads the image manifest (image.json) that drift-image wrote in
// dir.
func LoadImage(dir string) (Image, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return Image{}, fmt.Errorf("load image %s: %w", dir, err)
	}
	m, err := imagebuild.ReadManifest(abs)
	if err != nil {
		return Image{}, err
	}
	opt := func(name string) string {
		if name == "" {
			return ""
		}
		return m.Path(abs, name)
	}
	return Image{
		Dir:          abs,
		Version:      m.Version,
		Kernel:       opt(m.Kernel),
		Initramfs:    opt(m.Initramfs),
		KeyInitramfs: opt(m.KeyInitramfs),
		ISO:          opt(m.ISO),
		Cmdline:      m.Cmdline,
	}, nil
}

// Config describes a lab to start.
type Config struct {
	Image    Image  // what to boot; required
	StateDir string // sockets, logs, pids and lab.json; required, created if missing
	Nodes    int    // number of VMs; 0: 1. Node 1 is the head unless NoHead.
	// NoHead makes every node a worker: no DHCP server on the segment, so
	// the nodes take link-local addresses.
	NoHead   bool
	Boot     BootMode // "": BootKernel
	NIC      NIC      // "": NICVirtio
	MemoryMB int      // RAM per VM; 0: DefaultMemoryMB
	// Accel is QEMU's accelerator. "": ResolveAccel ($DRIFT_LAB_ACCEL, else
	// a KVM probe boot cached in StateDir, else TCG).
	Accel Accel
	// KernelArgs are appended to each node's kernel command line in
	// BootKernel mode (after drift.role=...); nil: none.
	KernelArgs []string
	// NodeArgs are appended after KernelArgs on the command line of the
	// node numbered by the key (e.g. {4: {"drift.key=..."}}); nil: none.
	NodeArgs map[int][]string
	// DieWithParent has the kernel kill the VMs when the process that
	// started them ends (tests, so a test binary killed at its -timeout
	// leaves no VM behind). false: the VMs outlive it (drift-lab up).
	DieWithParent bool
	QEMU          string       // QEMU binary; "": qemu-system-x86_64 from PATH
	OVMFDir       string       // directory with OVMF_CODE_4M.fd and OVMF_VARS_4M.fd; "": /usr/share/OVMF
	Logger        *slog.Logger // logs every QEMU command line; nil: slog.Default()
}

// Lab is a running cluster of VMs.
type Lab struct {
	dir string
	st  *state
	log *slog.Logger

	// dieWithParent is Config.DieWithParent, for nodes started later
	// (Add, StartNode); false for a lab from Open.
	dieWithParent bool

	mu      sync.Mutex
	cmds    map[int]*exec.Cmd     // QEMU processes this process started
	brokers map[int]chan struct{} // lab port brokers this process started: closed once reaped
	ready   map[int]Ready
}

// lookQEMU finds the QEMU binary.
func lookQEMU(name string) (string, error) {
	if name == "" {
		name = "qemu-system-x86_64"
	}
	p, err := exec.LookPath(name)
	if err != nil {
		if name == "qemu-system-x86_64" {
			return "", ErrNoQEMU
		}
		return "", fmt.Errorf("find qemu %s: %w", name, err)
	}
	return p, nil
}

// Up starts a lab and waits until every node has printed its ready line,
// calling onReady (if not nil) as each one does. On a wait failure it
// returns the lab, still running, with the error, so the caller can inspect
// or Down it; on a start failure nothing is left running and the lab is nil.
func Up(ctx context.Context, cfg Config, onReady func(Ready)) (*Lab, error) {
	l, err := Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return l, l.WaitReady(ctx, onReady)
}

// Start creates the lab's network and starts its VMs, without waiting for
// them to boot. If it fails, it stops what it started.
func Start(ctx context.Context, cfg Config) (*Lab, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 1
	}
	if cfg.Nodes < 0 || cfg.Nodes > 250 {
		return nil, fmt.Errorf("start lab: %d nodes: want 1 to 250", cfg.Nodes)
	}
	if cfg.Boot == "" {
		cfg.Boot = BootKernel
	}
	if cfg.NIC == "" {
		cfg.NIC = NICVirtio
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = DefaultMemoryMB
	}
	if cfg.OVMFDir == "" {
		cfg.OVMFDir = "/usr/share/OVMF"
	}
	if cfg.StateDir == "" {
		return nil, errors.New("start lab: no state directory")
	}
	dir, err := filepath.Abs(cfg.StateDir)
	if err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}
	qemu, err := lookQEMU(cfg.QEMU)
	if err != nil {
		return nil, err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, ErrNoIP
	}
	if err := checkImage(cfg); err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}
	if p := filepath.Join(dir, fmt.Sprintf("node%d.console.sock", cfg.Nodes)); len(p) > maxSockPath {
		return nil, fmt.Errorf("start lab: state directory %s is too long for unix socket paths (%d bytes, max %d): use a shorter one", dir, len(p), maxSockPath)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("start lab: %w", err)
	}
	if old, err := readState(dir); err == nil {
		for _, n := range old.Nodes {
			if qemuRunning(n.PID) {
				return nil, fmt.Errorf("start lab: %w in %s: stop it with drift-lab down", ErrRunning, dir)
			}
		}
	}
	// Whatever is left of an earlier lab in this directory is stale.
	if err := Down(ctx, dir, log); err != nil {
		return nil, fmt.Errorf("start lab: clean up earlier lab: %w", err)
	}
	if cfg.Accel == "" {
		a, err := ResolveAccel(ctx, ProbeConfig{CacheDir: dir, Kernel: cfg.Image.Kernel, QEMU: cfg.QEMU, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("start lab: %w", err)
		}
		cfg.Accel = a
	}

	if cfg.Boot == BootKernel && cfg.Image.KeyInitramfs != "" {
		// QEMU's -initrd takes one file: the nodes boot the key archive
		// and the initramfs concatenated, as the ISO's loaders do (the
		// uncompressed archive first, each at a 4-byte boundary).
		withKey := filepath.Join(dir, "initramfs-with-key.cpio")
		if err := concatFiles(withKey, cfg.Image.KeyInitramfs, cfg.Image.Initramfs); err != nil {
			return nil, fmt.Errorf("start lab: %w", err)
		}
		cfg.Image.Initramfs = withKey
	}
	st := &state{
		NetNS:    NetNSName(dir),
		Bridge:   BridgeName,
		ImageDir: cfg.Image.Dir,
		Version:  cfg.Image.Version,
		Boot:     cfg.Boot,
		NIC:      cfg.NIC,
		Accel:    cfg.Accel,
		Started:  time.Now().UTC(),

		Image:      cfg.Image,
		MemoryMB:   cfg.MemoryMB,
		KernelArgs: cfg.KernelArgs,
		NoHead:     cfg.NoHead,
		QEMU:       qemu,
		OVMFDir:    cfg.OVMFDir,
	}
	l := &Lab{dir: dir, st: st, log: log, dieWithParent: cfg.DieWithParent, cmds: map[int]*exec.Cmd{}, brokers: map[int]chan struct{}{}, ready: map[int]Ready{}}
	fail := func(err error) (*Lab, error) {
		if derr := l.Down(context.WithoutCancel(ctx)); derr != nil {
			log.Error("stop lab after failed start", "err", derr)
		}
		return nil, err
	}
	if err := writeState(dir, st); err != nil {
		return fail(err)
	}
	if err := createNetwork(ctx, st.NetNS, cfg.Nodes); err != nil {
		return fail(fmt.Errorf("start lab: %w", err))
	}
	for n := 1; n <= cfg.Nodes; n++ {
		if err := l.newNode(ctx, n, cfg.NodeArgs[n]); err != nil {
			return fail(fmt.Errorf("start node %d: %w", n, err))
		}
	}
	return l, nil
}

// Add boots one more node (a worker) on the running lab's network, with
// args appended to its kernel command line, and returns its number. It
// does not wait for the node to be ready (WaitReadyNode does).
func (l *Lab) Add(ctx context.Context, args []string) (int, error) {
	l.mu.Lock()
	n := len(l.st.Nodes) + 1
	l.mu.Unlock()
	if p := l.nodePath(n, ".console.sock"); len(p) > maxSockPath {
		return 0, fmt.Errorf("add node %d: socket path %s is too long", n, p)
	}
	for _, c := range tapCommands(l.st.NetNS, n) {
		if err := ip(ctx, c...); err != nil {
			return 0, fmt.Errorf("add node %d: %w", n, err)
		}
	}
	if err := l.newNode(ctx, n, args); err != nil {
		return 0, fmt.Errorf("add node %d: %w", n, err)
	}
	return n, nil
}

// checkImage checks that the files the boot mode needs exist.
func checkImage(cfg Config) error {
	need := map[string]string{}
	switch cfg.Boot {
	case BootKernel:
		need["kernel"] = cfg.Image.Kernel
		need["initramfs"] = cfg.Image.Initramfs
	case BootISO, BootUSB:
		need["ISO"] = cfg.Image.ISO
	case BootISOUEFI, BootUSBUEFI:
		need["ISO"] = cfg.Image.ISO
		for _, f := range []string{"OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"} {
			if _, err := os.Stat(filepath.Join(cfg.OVMFDir, f)); err != nil {
				return fmt.Errorf("%w (%s)", ErrNoOVMF, filepath.Join(cfg.OVMFDir, f))
			}
		}
	default:
		_, err := ParseBoot(string(cfg.Boot))
		return err
	}
	if _, err := ParseNIC(string(cfg.NIC)); err != nil {
		return err
	}
	for what, p := range need {
		if p == "" {
			return fmt.Errorf("image in %s has no %s (rebuild it with make image)", cfg.Image.Dir, what)
		}
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("image %s: %w (rebuild it with make image)", what, err)
		}
	}
	return nil
}

// nodePath is the path of node n's file with the given suffix.
func (l *Lab) nodePath(n int, suffix string) string {
	return filepath.Join(l.dir, "node"+strconv.Itoa(n)+suffix)
}

// newNode builds node n's QEMU command line and starts it, with extra
// appended to its kernel command line.
func (l *Lab) newNode(ctx context.Context, n int, extra []string) error {
	return l.newNodeAs(ctx, n, extra, l.st.Boot, l.st.NIC)
}

// newNodeAs is newNode with the node's own boot mode and NIC.
func (l *Lab) newNodeAs(ctx context.Context, n int, extra []string, boot BootMode, nic NIC) error {
	st := l.st
	ipPath, err := exec.LookPath("ip")
	if err != nil {
		return ErrNoIP
	}
	ns := nodeState{
		Num:         n,
		Role:        nodeRole(n, st.NoHead),
		MAC:         NodeMAC(labID(l.dir), n),
		Tap:         tapName(n),
		ConsoleSock: l.nodePath(n, ".console.sock"),
		ConsoleLog:  l.nodePath(n, ".console.log"),
		LabSock:     l.nodePath(n, ".lab.sock"),
		PortSock:    l.nodePath(n, ".port.sock"),
		QMPSock:     l.nodePath(n, ".qmp.sock"),
		QEMULog:     l.nodePath(n, ".qemu.log"),
		PIDFile:     l.nodePath(n, ".pid"),
	}
	spec := vmSpec{
		Node: n, Accel: st.Accel, MemoryMB: st.MemoryMB, Boot: boot, NIC: nic,
		MAC: ns.MAC, Tap: ns.Tap,
		ConsoleSock: ns.ConsoleSock, ConsoleLog: ns.ConsoleLog, PortSock: ns.PortSock,
		QMPSock: ns.QMPSock, PIDFile: ns.PIDFile,
	}
	switch boot {
	case BootKernel:
		spec.Kernel, spec.Initrd = st.Image.Kernel, st.Image.Initramfs
		spec.Append = kernelAppend(st.Image.Cmdline, ns.Role, append(slices.Clone(st.KernelArgs), extra...))
	case BootISO:
		spec.ISO = st.Image.ISO
	case BootISOUEFI, BootUSBUEFI:
		spec.ISO = st.Image.ISO
		spec.OVMFCode = filepath.Join(st.OVMFDir, "OVMF_CODE_4M.fd")
		spec.OVMFVars = l.nodePath(n, ".OVMF_VARS.fd")
		if err := copyFile(spec.OVMFVars, filepath.Join(st.OVMFDir, "OVMF_VARS_4M.fd")); err != nil {
			return err
		}
	}
	switch boot {
	case BootUSB, BootUSBUEFI:
		spec.USBDisk = l.nodePath(n, ".usb.img")
		if err := copyFile(spec.USBDisk, st.Image.ISO); err != nil {
			return err
		}
	}
	ns.Argv = append([]string{ipPath, "netns", "exec", st.NetNS, st.QEMU}, spec.args()...)
	if err := os.WriteFile(l.nodePath(n, ".cmdline"), []byte(reproScript(st.NetNS, n, shellQuote(ns.Argv))), 0o644); err != nil {
		return err
	}
	l.mu.Lock()
	l.st.Nodes = append(l.st.Nodes, ns)
	l.mu.Unlock()
	return l.launch(ctx, n)
}

// launch runs node n's recorded QEMU command line (the same MAC, the same
// disks) and records its process, then starts its lab port broker.
func (l *Lab) launch(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	l.stopBroker(ctx, n) // one left from the node's last boot
	for _, p := range []string{ns.ConsoleSock, ns.LabSock, ns.PortSock, ns.QMPSock, ns.ConsoleLog, ns.PIDFile} {
		os.Remove(p)
	}
	l.log.Info("start qemu", "node", n, "mac", ns.MAC, "cmdline", shellQuote(ns.Argv))
	out, err := os.OpenFile(ns.QEMULog, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	cmd := exec.Command(ns.Argv[0], ns.Argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	// Its own session: QEMU outlives drift-lab up and ignores its terminal's signals.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if l.dieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	started := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run qemu: %w", err)
	}
	l.mu.Lock()
	l.cmds[n] = cmd
	delete(l.ready, n)
	// ip netns exec execs QEMU in place: its PID is QEMU's.
	l.st.Nodes[n-1].PID, l.st.Nodes[n-1].Started = cmd.Process.Pid, started
	l.mu.Unlock()
	if err := writeState(l.dir, l.st); err != nil {
		return err
	}
	return l.startBroker(ctx, n)
}

// StopNode powers node n off hard, as when a machine loses power: QEMU
// quits at once (QMP quit, SIGKILL if it lingers); the guest gets no
// shutdown. Its console log is kept, as nodeN.console.log.prev once
// StartNode boots it again. Stopping a stopped node does nothing.
func (l *Lab) StopNode(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	l.stopNode(ctx, ns)
	if qemuRunning(ns.PID) {
		return fmt.Errorf("stop node %d: qemu pid %d still runs", n, ns.PID)
	}
	l.mu.Lock()
	l.st.Nodes[n-1].PID = 0
	delete(l.ready, n)
	l.mu.Unlock()
	return writeState(l.dir, l.st)
}

// StartNode boots stopped node n again with the same command line: the
// same MAC address, kernel arguments and disks. It does not wait for the
// node to be ready (WaitReadyNode does).
func (l *Lab) StartNode(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	if qemuRunning(ns.PID) {
		return fmt.Errorf("start node %d: it is running (stop it first with drift-lab stop)", n)
	}
	if err := os.Rename(ns.ConsoleLog, ns.ConsoleLog+".prev"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("start node %d: %w", n, err)
	}
	if err := l.launch(ctx, n); err != nil {
		return fmt.Errorf("start node %d: %w", n, err)
	}
	return nil
}

// Command returns a command that runs name with args on the host inside
// the lab's network namespace, where the bridge holds HostAddr and
// HostLinkLocal and so reaches every node (e.g. the drift CLI with
// --cluster and --key-file).
func (l *Lab) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", l.st.NetNS, name}, args...)...)
}

// reproScript is the content of nodeN.cmdline: the QEMU command line, to run
// as is while the lab's network exists, and as comments before it the
// commands that recreate that network for this node alone.
func reproScript(ns string, n int, qemuLine string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# drift-lab node %d. Run the last line while the lab's network exists;\n", n)
	fmt.Fprintf(&b, "# after drift-lab down, recreate it first (as root):\n")
	for _, c := range networkCommands(ns, []int{n}) {
		fmt.Fprintf(&b, "#   ip %s\n", shellQuote(c))
	}
	fmt.Fprintf(&b, "# and remove it afterwards with: ip netns del %s\n", ns)
	b.WriteString(qemuLine + "\n")
	return b.String()
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

// Open returns the lab whose state is in dir, as started by another process.
func Open(dir string, logger *slog.Logger) (*Lab, error) {
	if logger == nil {
		logger = slog.Default()
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open lab %s: %w", dir, err)
	}
	st, err := readState(abs)
	if err != nil {
		return nil, err
	}
	return &Lab{dir: abs, st: st, log: logger, cmds: map[int]*exec.Cmd{}, brokers: map[int]chan struct{}{}, ready: map[int]Ready{}}, nil
}

// Dir returns the lab's state directory.
func (l *Lab) Dir() string { return l.dir }

// NetNS returns the name of the lab's network namespace; run host-side
// tools in it with ip netns exec.
func (l *Lab) NetNS() string { return l.st.NetNS }

// Bridge returns the name of the bridge (inside NetNS) the nodes are on.
func (l *Lab) Bridge() string { return l.st.Bridge }

// Accel returns the accelerator the lab's VMs run under.
func (l *Lab) Accel() Accel { return l.st.Accel }

// Nodes returns the number of nodes.
func (l *Lab) Nodes() int { return len(l.st.Nodes) }

func (l *Lab) node(n int) (nodeState, error) {
	if n < 1 || n > len(l.st.Nodes) {
		return nodeState{}, fmt.Errorf("no node %d: the lab has nodes 1 to %d", n, len(l.st.Nodes))
	}
	return l.st.Nodes[n-1], nil
}

// mustNode is node n for the accessors below, which, like a slice index,
// panic for a node number outside 1 to Nodes().
func (l *Lab) mustNode(n int) nodeState {
	ns, err := l.node(n)
	if err != nil {
		panic(err)
	}
	return ns
}

// ConsoleSock returns the unix socket of node n's serial console.
func (l *Lab) ConsoleSock(n int) string { return l.mustNode(n).ConsoleSock }

// ConsoleLog returns the file holding everything node n printed on its console.
func (l *Lab) ConsoleLog(n int) string { return l.mustNode(n).ConsoleLog }

// LabSock returns the unix socket of node n's lab port broker, for
// labport.Exec and labport.Run. Lab.Exec and Lab.Run are better: they
// start the broker again if it has gone.
func (l *Lab) LabSock(n int) string { return l.mustNode(n).LabSock }

// MAC returns node n's MAC address.
func (l *Lab) MAC(n int) string { return l.mustNode(n).MAC }

// CommandLine returns node n's full QEMU command, shell-quoted, as run.
func (l *Lab) CommandLine(n int) string { return shellQuote(l.mustNode(n).Argv) }

// StartedAt returns when node n's QEMU process was started.
func (l *Lab) StartedAt(n int) time.Time { return l.mustNode(n).Started }

// Running reports whether node n's QEMU process runs.
func (l *Lab) Running(n int) bool {
	ns, err := l.node(n)
	return err == nil && qemuRunning(ns.PID)
}

// PowerOff presses node n's power button (ACPI): driftd sees a clean
// shutdown request.
func (l *Lab) PowerOff(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	if err := qmpCommand(ctx, ns.QMPSock, "system_powerdown"); err != nil {
		return fmt.Errorf("power off node %d: %w", n, err)
	}
	return nil
}

// Kill pulls node n's plug: its QEMU is killed at once, as when a machine
// loses power.
func (l *Lab) Kill(n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	if !qemuRunning(ns.PID) {
		return nil
	}
	if err := syscall.Kill(ns.PID, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill node %d: %w", n, err)
	}
	return nil
}

// WaitFor follows node n's console from the start of this boot until a line
// matches re, and returns that line. It fails when ctx ends or QEMU exits;
// the error then carries the last lines of the node's console.
func (l *Lab) WaitFor(ctx context.Context, n int, re *regexp.Regexp) (string, error) {
	ns, err := l.node(n)
	if err != nil {
		return "", err
	}
	line, _, err := waitLine(ctx, ns.ConsoleLog, 0, re, func() bool { return qemuRunning(ns.PID) })
	if err != nil {
		return "", l.waitError(ns, re, err)
	}
	return line, nil
}

// FollowConsole copies node n's console log to w, from the start of this
// boot, as it grows, until ctx ends or the node's QEMU exits.
func (l *Lab) FollowConsole(ctx context.Context, n int, w io.Writer) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	fl := &follower{path: ns.ConsoleLog, alive: func() bool { return qemuRunning(ns.PID) }}
	defer fl.close()
	for {
		line, err := fl.next(ctx)
		if errors.Is(err, ErrExited) || errors.Is(err, context.Canceled) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("follow console of node %d: %w", n, err)
		}
		if _, err := io.WriteString(w, line+"\n"); err != nil {
			return err
		}
	}
}

func (l *Lab) waitError(ns nodeState, re *regexp.Regexp, err error) error {
	msg := fmt.Sprintf("node %d: wait for %q: %v", ns.Num, re.String(), err)
	if errors.Is(err, ErrExited) {
		if b, rerr := os.ReadFile(ns.QEMULog); rerr == nil && len(strings.TrimSpace(string(b))) > 0 {
			msg += "\nqemu output (" + ns.QEMULog + "):\n" + strings.TrimSpace(string(b))
		}
	}
	msg += fmt.Sprintf("\nlast %d console lines of node %d (%s):\n%s\nreproduce by hand with the commands in %s",
		tailLinesOnError, ns.Num, ns.ConsoleLog, tailLines(ns.ConsoleLog, tailLinesOnError), l.nodePath(ns.Num, ".cmdline"))
	return &WaitError{Node: ns.Num, Err: err, msg: msg}
}

// WaitError is a failed wait on a node's console.
type WaitError struct {
	Node int
	Err  error // ErrExited, or the context's error
	msg  string
}

func (e *WaitError) Error() string { return e.msg }
func (e *WaitError) Unwrap() error { return e.Err }

// WaitReady waits until every node has printed its ready line, calling
// onReady (if not nil) for each, one at a time, as they come. It returns at
// the first node that fails (QEMU exited, or ctx ended).
func (l *Lab) WaitReady(ctx context.Context, onReady func(Ready)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		cbMu     sync.Mutex
		errOnce  sync.Once
		firstErr error
	)
	for n := 1; n <= l.Nodes(); n++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := l.WaitReadyNode(ctx, n)
			if err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
				return
			}
			if onReady != nil {
				cbMu.Lock()
				onReady(r)
				cbMu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// WaitReadyNode waits for node n's ready line and returns it parsed.
func (l *Lab) WaitReadyNode(ctx context.Context, n int) (Ready, error) {
	line, err := l.WaitFor(ctx, n, ReadyRE)
	if err != nil {
		return Ready{}, err
	}
	r, ok := ParseReady(line)
	if !ok {
		return Ready{}, fmt.Errorf("node %d: malformed ready line %q", n, line)
	}
	r.Node = n
	l.mu.Lock()
	l.ready[n] = r
	l.mu.Unlock()
	return r, nil
}

// Ready returns node n's ready line if it has printed one in this boot.
func (l *Lab) Ready(n int) (Ready, bool) {
	l.mu.Lock()
	r, ok := l.ready[n]
	l.mu.Unlock()
	if ok {
		return r, true
	}
	ns, err := l.node(n)
	if err != nil {
		return Ready{}, false
	}
	b, err := os.ReadFile(ns.ConsoleLog)
	if err != nil {
		return Ready{}, false
	}
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		if rr, ok := ParseReady(line); ok {
			r, found = rr, true
		}
	}
	r.Node = n
	return r, found
}

// Resolve turns a node reference into a node number: a number (2), node2,
// or the hostname from the node's ready line (drift-d1ab02).
func (l *Lab) Resolve(ref string) (int, error) {
	names := map[int]string{}
	for n := 1; n <= l.Nodes(); n++ {
		if r, ok := l.Ready(n); ok {
			names[n] = r.Name
		}
	}
	return resolveNode(ref, l.Nodes(), names)
}

func resolveNode(ref string, nodes int, names map[int]string) (int, error) {
	num := strings.TrimPrefix(ref, "node")
	if n, err := strconv.Atoi(num); err == nil {
		if n < 1 || n > nodes {
			return 0, fmt.Errorf("no node %s: the lab has nodes 1 to %d", ref, nodes)
		}
		return n, nil
	}
	for n := 1; n <= nodes; n++ {
		if names[n] != "" && names[n] == ref {
			return n, nil
		}
	}
	return 0, fmt.Errorf("no node named %q: use a number from 1 to %d or a name from drift-lab status", ref, nodes)
}

// NodeStatus is one line of a lab's status.
type NodeStatus struct {
	Node    int
	Name    string // from the ready line; "" before it
	Role    string
	Addr    string
	Version string
	State   string // "ready", "booting" or "stopped"
	PID     int
}

// Status reports each node's state.
func (l *Lab) Status() []NodeStatus {
	var out []NodeStatus
	for _, ns := range l.st.Nodes {
		s := NodeStatus{Node: ns.Num, PID: ns.PID, State: "stopped"}
		r, ready := l.Ready(ns.Num)
		s.Name, s.Role, s.Addr, s.Version = r.Name, r.Role, r.Addr, r.Version
		if qemuRunning(ns.PID) {
			s.State = "booting"
			if ready {
				s.State = "ready"
			}
		}
		out = append(out, s)
	}
	return out
}

// Down stops every VM of the lab (QMP quit, then SIGKILL after a grace
// period) and deletes its network namespace with the bridge and taps. It
// keeps console logs and command lines. It always runs to the end, even
// when ctx is done, and calling it again is harmless.
func (l *Lab) Down(ctx context.Context) error {
	ctx = context.WithoutCancel(ctx)
	var errs []error
	var wg sync.WaitGroup
	for _, ns := range l.st.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.stopNode(ctx, ns)
		}()
	}
	wg.Wait()
	if err := deleteNetwork(ctx, l.st.NetNS); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range l.st.Nodes {
		if qemuRunning(ns.PID) {
			errs = append(errs, fmt.Errorf("stop node %d: qemu pid %d still runs", ns.Num, ns.PID))
		}
		for _, p := range []string{ns.ConsoleSock, ns.LabSock, ns.PortSock, ns.QMPSock, ns.PIDFile,
			l.nodePath(ns.Num, ".broker.pid"), l.nodePath(ns.Num, ".broker.lock"),
			l.nodePath(ns.Num, ".usb.img"), l.nodePath(ns.Num, ".OVMF_VARS.fd")} {
			os.Remove(p)
		}
	}
	if len(errs) == 0 {
		if err := os.Remove(filepath.Join(l.dir, stateName)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("stop lab: %w", err))
		}
	}
	return errors.Join(errs...)
}

// stopNode asks node's QEMU to quit and kills it if it has not after the
// grace period.
func (l *Lab) stopNode(ctx context.Context, ns nodeState) {
	pid := ns.PID
	if pid == 0 {
		pid = readPIDFile(ns.PIDFile)
	}
	running := qemuRunning(pid)
	if running {
		if err := qmpCommand(ctx, ns.QMPSock, "quit"); err != nil {
			l.log.Debug("qmp quit", "node", ns.Num, "err", err)
		}
		if !waitGone(ctx, pid, quitGrace) {
			l.log.Warn("qemu did not quit; killing it", "node", ns.Num, "pid", pid)
			syscall.Kill(pid, syscall.SIGKILL)
			waitGone(ctx, pid, quitGrace)
		}
	}
	l.mu.Lock()
	cmd := l.cmds[ns.Num]
	delete(l.cmds, ns.Num)
	l.mu.Unlock()
	if cmd != nil {
		cmd.Wait() // reap our child; its exit status is of no interest here
	} else if running {
		// Not our child: give its parent (init, once drift-lab up has
		// exited) a moment to reap it, so that no zombie is left listed
		// after Down.
		waitReaped(ctx, pid, quitGrace)
	}
	l.stopBroker(ctx, ns.Num)
}

func readPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// Down stops the lab whose state is in dir, if any, and removes what is left
// of it (its network namespace). It is a no-op when nothing runs.
func Down(ctx context.Context, dir string, logger *slog.Logger) error {
	l, err := Open(dir, logger)
	if errors.Is(err, ErrNoLab) {
		return deleteNetwork(context.WithoutCancel(ctx), NetNSName(dir))
	}
	if err != nil {
		return err
	}
	return l.Down(ctx)
}

// concatFiles writes the files srcs one after the other to dst, each
// padded with zeros to a multiple of 4 bytes, where the kernel looks for
// the next archive of an initramfs.
func concatFiles(dst string, srcs ...string) error {
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	for _, src := range srcs {
		in, err := os.Open(src)
		if err != nil {
			out.Close()
			return err
		}
		n, err := io.Copy(out, in)
		in.Close()
		if err == nil && n%4 != 0 {
			_, err = out.Write(make([]byte, 4-n%4))
		}
		if err != nil {
			out.Close()
			return fmt.Errorf("copy %s to %s: %w", src, dst, err)
		}
	}
	return out.Close()
}
