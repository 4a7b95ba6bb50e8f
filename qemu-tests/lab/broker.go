package lab

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/driftcluster/drift/agent/labport"
)

// Each node's lab port has a broker (labport.Broker): a process of its
// own that holds the one connection QEMU's chardev socket (nodeN.port.sock)
// takes and serves any number of clients on nodeN.lab.sock. It is this
// package's own binary run again (drift-lab, or a test binary that links
// this package) with brokerEnv set: init below turns such a process into
// a broker before main runs. The lab starts a node's broker with its
// QEMU; the broker ends when that QEMU exits; Exec and Run start a new
// one if it has gone.
const brokerEnv = "DRIFT_LAB_BROKER"

// brokerConfig is what a broker process is told, as JSON in brokerEnv.
type brokerConfig struct {
	Node     int    `json:"node"`
	PortSock string `json:"port_sock"` // QEMU's chardev socket
	LabSock  string `json:"lab_sock"`  // where clients connect
	QEMUPID  int    `json:"qemu_pid"`  // the broker ends when it does
	PIDFile  string `json:"pid_file"`
	LockFile string `json:"lock_file"`
}

func init() {
	if v, ok := os.LookupEnv(brokerEnv); ok {
		os.Exit(brokerMain(v))
	}
}

// brokerMain is a broker process's main; it returns the exit code.
func brokerMain(v string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	var cfg brokerConfig
	if err := json.Unmarshal([]byte(v), &cfg); err != nil {
		log.Error("lab port broker: bad configuration in $"+brokerEnv, "err", err)
		return 2
	}
	log = log.With("node", cfg.Node, "pid", os.Getpid())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	if err := runBroker(ctx, cfg, log); err != nil && ctx.Err() == nil {
		log.Error("lab port broker", "err", err)
		return 1
	}
	return 0
}

// errQEMUExited ends a broker: its node's VM is gone.
var errQEMUExited = errors.New("the node's QEMU exited (stopped, or the VM rebooted)")

// runBroker serves the node's lab port until its QEMU exits or ctx ends.
// It does nothing if another broker serves the node.
func runBroker(ctx context.Context, cfg brokerConfig, log *slog.Logger) error {
	// A broker that is ending (its QEMU just exited) may still hold the
	// lock for a moment when the node's next QEMU starts.
	lock, err := lockWithin(ctx, cfg.LockFile, 10*time.Second)
	if err != nil {
		return err
	}
	if lock == nil {
		log.Info("lab port broker: another broker serves this node")
		return nil
	}
	defer lock.Close()
	if err := os.WriteFile(cfg.PIDFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return err
	}
	defer func() {
		if readPIDFile(cfg.PIDFile) == os.Getpid() {
			os.Remove(cfg.PIDFile)
		}
	}()
	os.Remove(cfg.LabSock)
	ln, err := net.Listen("unix", cfg.LabSock)
	if err != nil {
		return fmt.Errorf("listen for lab port clients: %w", err)
	}
	log.Info("lab port broker: serving", "sock", cfg.LabSock, "port", cfg.PortSock, "qemu", cfg.QEMUPID)
	dial := func(ctx context.Context) (io.ReadWriteCloser, error) {
		for {
			if !qemuRunning(cfg.QEMUPID) {
				return nil, errQEMUExited
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", cfg.PortSock)
			if err == nil {
				return c, nil
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(pollInterval):
			}
		}
	}
	err = (&labport.Broker{Dial: dial, Logger: log}).Run(ctx, ln)
	if errors.Is(err, errQEMUExited) {
		log.Info("lab port broker: done", "why", err)
		return nil
	}
	return err
}

// lockWithin takes an exclusive flock on path, trying for at most d; it
// returns nil, nil if another process held it all that time.
func lockWithin(ctx context.Context, path string, d time.Duration) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	deadline := time.Now().Add(d)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			f.Close()
			return nil, nil
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// brokerRunning reports whether pid is a running lab port broker.
func brokerRunning(pid int) bool {
	if !procRunning(pid) {
		return false
	}
	env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	return err == nil && (bytes.HasPrefix(env, []byte(brokerEnv+"=")) || bytes.Contains(env, []byte("\x00"+brokerEnv+"=")))
}

// brokerStartWait bounds how long starting a broker waits for it to take
// clients.
const brokerStartWait = 10 * time.Second

// startBroker starts node n's broker and waits until its socket takes
// connections (a broker another process started at the same time will
// do).
func (l *Lab) startBroker(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("start the lab port broker: %w", err)
	}
	cfg, _ := json.Marshal(brokerConfig{
		Node: n, PortSock: ns.PortSock, LabSock: ns.LabSock, QEMUPID: ns.PID,
		PIDFile: l.nodePath(n, ".broker.pid"), LockFile: l.nodePath(n, ".broker.lock"),
	})
	logPath := l.nodePath(n, ".broker.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start the lab port broker: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), brokerEnv+"="+string(cfg))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = "/"
	// Its own session: Ctrl-C on drift-lab exec does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if l.dieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the lab port broker (%s): %w", self, err)
	}
	exited := make(chan struct{})
	go func() { // reaps it; stopBroker waits on exited
		cmd.Wait()
		close(exited)
	}()
	l.mu.Lock()
	l.brokers[n] = exited
	l.mu.Unlock()

	// Ready is a running broker in the pid file (it writes it once it
	// holds the lock, so a broker that is ending, whose socket may take
	// connections for a moment, is gone by then) and a socket that takes
	// connections.
	ctx, cancel := context.WithTimeout(ctx, brokerStartWait)
	defer cancel()
	for {
		if brokerRunning(readPIDFile(l.nodePath(n, ".broker.pid"))) {
			var d net.Dialer
			if c, err := d.DialContext(ctx, "unix", ns.LabSock); err == nil {
				c.Close()
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d: the lab port broker did not start within %s; see %s", n, brokerStartWait, logPath)
		case <-exited:
			if brokerRunning(readPIDFile(l.nodePath(n, ".broker.pid"))) {
				exited = nil // another process's broker won the lock
				continue
			}
			return fmt.Errorf("node %d: the lab port broker exited at once; see %s", n, logPath)
		case <-time.After(pollInterval):
		}
	}
}

// ensureBroker starts node n's broker if its QEMU runs and no broker does.
func (l *Lab) ensureBroker(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	if !qemuRunning(ns.PID) {
		return fmt.Errorf("node %d is not running (drift-lab start %d boots it again)", n, n)
	}
	if ns.PortSock == "" || brokerRunning(readPIDFile(l.nodePath(n, ".broker.pid"))) {
		return nil // ns.PortSock is "" in a lab started before brokers existed
	}
	l.log.Info("starting the lab port broker again", "node", n)
	return l.startBroker(ctx, n)
}

// stopBroker waits for node n's broker to end, as it does once its QEMU
// has exited, and ends it if it does not.
func (l *Lab) stopBroker(ctx context.Context, n int) {
	l.mu.Lock()
	exited := l.brokers[n]
	delete(l.brokers, n)
	l.mu.Unlock()
	pid := readPIDFile(l.nodePath(n, ".broker.pid"))
	alive := func() bool {
		select {
		case <-exited: // closed: ours has been reaped
		default:
			if exited != nil {
				return true
			}
		}
		return brokerRunning(pid)
	}
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		if sig != 0 && pid > 0 && brokerRunning(pid) {
			syscall.Kill(pid, sig)
		}
		for deadline := time.Now().Add(3 * time.Second); alive() && time.Now().Before(deadline); {
			select {
			case <-ctx.Done():
				return
			case <-time.After(pollInterval):
			}
		}
		if !alive() {
			break
		}
	}
	if exited == nil && pid > 0 {
		waitReaped(ctx, pid, quitGrace)
	}
}
