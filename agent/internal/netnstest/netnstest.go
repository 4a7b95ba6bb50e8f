// Package netnstest gives the agent's host-tier tests a private network to
// run real DHCP and ARP on. Main re-runs the test binary inside a fresh
// network namespace, so every thread and goroutine of the tests is there
// and nothing they do reaches the host's interfaces; NewVeth makes a veth
// pair whose far end lives in a second namespace of its own, where the
// test runs the other party (a DHCP server, a host that holds an address).
// Tests call Require first: it skips, saying why, when the test is not
// root or namespaces are unavailable.
//
// Why re-exec rather than unshare on a locked thread: the code under test
// starts goroutines that open sockets and talk netlink later, and those
// run on whatever thread the scheduler picks, which a per-thread unshare
// does not cover.
package netnstest

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

const envChild = "DRIFT_NETNSTEST_CHILD"

// unavailable says why Require skips; "" inside a private namespace.
var unavailable = "netnstest.Main was not called from TestMain"

// Main runs the tests (call it from TestMain and pass m). As root it runs
// them in a child process in a new network namespace with loopback up,
// and exits with the child's status; otherwise it runs them here, and the
// tests that Require a namespace skip.
func Main(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		unavailable = ""
		if err := linkUp("lo"); err != nil {
			unavailable = fmt.Sprintf("bring up loopback in the test namespace: %v", err)
		}
		os.Exit(m.Run())
	}
	if os.Geteuid() != 0 {
		unavailable = fmt.Sprintf("needs root to create network namespaces (running as uid %d)", os.Geteuid())
		os.Exit(m.Run())
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envChild+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		unavailable = fmt.Sprintf("cannot create a network namespace: %v", err)
		os.Exit(m.Run())
	}
	err := cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		os.Exit(0)
	case errors.As(err, &ee) && ee.Exited():
		os.Exit(ee.ExitCode())
	}
	fmt.Fprintf(os.Stderr, "netnstest: test process in its network namespace: %v\n", err)
	os.Exit(1)
}

// Require skips t unless it runs in the private namespace Main made.
func Require(t testing.TB) {
	t.Helper()
	if unavailable != "" {
		t.Skip("netnstest: " + unavailable)
	}
}

func linkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(l)
}

// Peer is the far end of a veth pair, in a network namespace of its own.
type Peer struct {
	Local string // the near end's name, in the test's namespace
	Name  string // the far end's name, in the peer namespace
	ns    netns.NsHandle
	h     *netlink.Handle
}

// NewVeth creates the veth pair local <-> peer, moves peer into a new
// network namespace, brings both ends (and the peer's loopback) up, and
// removes it all when t ends.
func NewVeth(t testing.TB, local, peer string) *Peer {
	t.Helper()
	Require(t)
	ns, err := newNS()
	if err != nil {
		t.Fatalf("netnstest: new network namespace: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netnstest: netlink in the peer namespace: %v", err)
	}
	t.Cleanup(h.Close)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: local}, PeerName: peer, PeerNamespace: netlink.NsFd(ns)}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatalf("netnstest: add veth %s <-> %s: %v", local, peer, err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(local); err == nil {
			netlink.LinkDel(l)
		}
	})
	if err := linkUp(local); err != nil {
		t.Fatalf("netnstest: bring %s up: %v", local, err)
	}
	for _, name := range []string{"lo", peer} {
		l, err := h.LinkByName(name)
		if err == nil {
			err = h.LinkSetUp(l)
		}
		if err != nil {
			t.Fatalf("netnstest: bring %s up in the peer namespace: %v", name, err)
		}
	}
	return &Peer{Local: local, Name: peer, ns: ns, h: h}
}

// newNS makes a network namespace without entering it: on a locked thread
// that switches back before it is released.
func newNS() (netns.NsHandle, error) {
	type result struct {
		ns  netns.NsHandle
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with this goroutine, namespace and all
		c <- result{ns, err}
	}()
	r := <-c
	return r.ns, r.err
}

// Do runs f on an OS thread inside the peer's namespace and returns its
// error. Sockets f opens (on its own goroutine) belong to that namespace;
// goroutines f starts run elsewhere, so whatever f runs must open its
// sockets before it starts them.
func (p *Peer) Do(f func() error) error {
	c := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			c <- fmt.Errorf("netnstest: current namespace: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(p.ns); err != nil {
			runtime.UnlockOSThread()
			c <- fmt.Errorf("netnstest: enter peer namespace: %w", err)
			return
		}
		err = f()
		if netns.Set(orig) == nil {
			runtime.UnlockOSThread()
		}
		c <- err
	}()
	return <-c
}

// AddAddr assigns prefix (e.g. "169.254.7.7/16") to the peer's end.
func (p *Peer) AddAddr(t testing.TB, prefix string) {
	t.Helper()
	pf := netip.MustParsePrefix(prefix)
	l, err := p.h.LinkByName(p.Name)
	if err == nil {
		err = p.h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: pf.Addr().AsSlice(), Mask: net.CIDRMask(pf.Bits(), pf.Addr().BitLen())}})
	}
	if err != nil {
		t.Fatalf("netnstest: add %s to %s in the peer namespace: %v", prefix, p.Name, err)
	}
}

// Addrs lists the IPv4 addresses of the peer's end.
func (p *Peer) Addrs() ([]netip.Prefix, error) { return addrs(p.h, p.Name) }

// MAC is the hardware address of the peer's end.
func (p *Peer) MAC(t testing.TB) net.HardwareAddr {
	t.Helper()
	l, err := p.h.LinkByName(p.Name)
	if err != nil {
		t.Fatalf("netnstest: %s in the peer namespace: %v", p.Name, err)
	}
	return l.Attrs().HardwareAddr
}

// Addrs lists the IPv4 addresses of interface ifname in the test's namespace.
func Addrs(ifname string) ([]netip.Prefix, error) { return addrs(&netlink.Handle{}, ifname) }

// addrs lists ifname's IPv4 addresses through h (the zero Handle: this
// namespace).
func addrs(h *netlink.Handle, ifname string) ([]netip.Prefix, error) {
	l, err := h.LinkByName(ifname)
	if err != nil {
		return nil, err
	}
	as, err := h.AddrList(l, netlink.FAMILY_V4)
	var ps []netip.Prefix
	for _, a := range as {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		bits, _ := a.Mask.Size()
		ps = append(ps, netip.PrefixFrom(ip.Unmap(), bits))
	}
	return ps, err
}

// Logger is a debug-level logger that writes into t's log.
func Logger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

// Poll calls cond every 100 ms until it returns true, and fails t with
// what if that takes longer than timeout.
func Poll(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("netnstest: after %s: %s", timeout, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
