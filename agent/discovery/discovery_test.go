package discovery

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/grandcat/zeroconf"
)

// inNetnsEnv marks the test process re-executed inside a new network
// namespace, where mDNS traffic cannot leave the machine.
const inNetnsEnv = "DRIFT_DISCOVERY_TEST_NETNS"

// inFreshNetns re-runs the calling test in a new network namespace (with
// `unshare --net`) and reports false; inside it, it makes lo multicast
// capable and reports true.
func inFreshNetns(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNetnsEnv) == "" {
		if os.Geteuid() != 0 {
			t.Skip("skipped: needs root to create a network namespace for mDNS traffic (run as root)")
		}
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("skipped: needs unshare(1) from util-linux to create a network namespace")
		}
		cmd := exec.Command("unshare", "--net", os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in a new network namespace: %s\n%s", cmd, out)
		if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
			t.Fatalf("%s in a network namespace: %v", t.Name(), err)
		}
		return false
	}
	// Refuse to run anywhere but a fresh namespace: its only interface is lo.
	ifs, err := net.Interfaces()
	if err != nil || len(ifs) != 1 || ifs[0].Name != "lo" {
		t.Fatalf("not in a fresh network namespace (interfaces %v, %v): refusing to send mDNS", ifs, err)
	}
	for _, args := range [][]string{
		{"link", "set", "lo", "up", "multicast", "on"},
		{"route", "add", "224.0.0.0/4", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return true
}

// peerLog collects the peers a Discovery reports.
type peerLog struct {
	mu    sync.Mutex
	peers []string
}

func (p *peerLog) add(addrs []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, a := range addrs {
		if !slices.Contains(p.peers, a) {
			p.peers = append(p.peers, a)
		}
	}
}

func (p *peerLog) has(a string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Contains(p.peers, a)
}

func (p *peerLog) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.peers, ",")
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDiscoveryInNetns(t *testing.T) {
	if !inFreshNetns(t) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	start := func(node, cluster, addr string, ml int) (*Discovery, *peerLog, *syncBuffer) {
		peers, logs := &peerLog{}, &syncBuffer{}
		d, err := New(Config{
			Self:       Record{ClusterID: cluster, Node: node, Version: "test", APIPort: 7947, MemberlistPort: ml},
			Interfaces: []string{"lo"},
			Addrs:      []string{addr},
			OnPeers:    peers.add,
			Interval:   2 * time.Second,
			Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); d.Run(ctx) }()
		return d, peers, logs
	}
	const ours, theirs = "0123456789abcdef", "fedcba9876543210"
	_, aPeers, aLogs := start("drift-aaaaaa", ours, "127.0.0.2", 7001)
	b, bPeers, _ := start("drift-bbbbbb", ours, "127.0.0.3", 7002)
	_, cPeers, _ := start("drift-cccccc", theirs, "127.0.0.4", 7003)
	lo, _ := net.InterfaceByName("lo")
	bad, err := zeroconf.RegisterProxy("drift-bad", Service, "local.", 7004, "drift-bad", []string{"127.0.0.6"}, []string{"id=" + ours, "node=x y", "ml=7004"}, []net.Interface{*lo})
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Shutdown()

	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("after 20s: %s (a found %s; b found %s; a's log:\n%s)", what, aPeers, bPeers, aLogs)
			}
		}
	}
	waitFor("a and b find each other", func() bool { return aPeers.has("127.0.0.3:7002") && bPeers.has("127.0.0.2:7001") })
	waitFor("a notes the other cluster and the malformed entry", func() bool {
		l := aLogs.String()
		return strings.Contains(l, "ignoring node of another cluster") && strings.Contains(l, "dropped malformed mDNS entry")
	})

	// b moves to a new address: a learns it in a later round.
	b.SetAddrs([]string{"127.0.0.5"})
	waitFor("a finds b at its new address", func() bool { return aPeers.has("127.0.0.5:7002") })

	for name, p := range map[string]*peerLog{"a": aPeers, "b": bPeers} {
		for _, never := range []string{"127.0.0.4:7003", "127.0.0.6:7004"} {
			if p.has(never) {
				t.Errorf("%s reported %s (another cluster or malformed): peers %s", name, never, p)
			}
		}
	}
	if aPeers.has("127.0.0.2:7001") || bPeers.has("127.0.0.3:7002") {
		t.Errorf("a node reported itself: a %s, b %s", aPeers, bPeers)
	}
	if cPeers.String() != "" {
		t.Errorf("the other cluster's node found %s, want nobody", cPeers)
	}
	if n := strings.Count(aLogs.String(), "ignoring node of another cluster"); n != 1 {
		t.Errorf("a logged the other cluster's node %d times, want once", n)
	}
}
