package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/google/go-cmp/cmp"
)

func TestParseMode(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    Mode
		wantErr bool
	}{
		{"", Mode{}, false},
		{"approve", Mode{}, false},
		{"auto", Mode{Auto: true}, false},
		{"52:54:00:AA:BB:CC", Mode{MACs: []string{"52:54:00:aa:bb:cc"}}, false},
		{"52:54:00:aa:bb:cc,52:54:00:aa:bb:cd", Mode{MACs: []string{"52:54:00:aa:bb:cc", "52:54:00:aa:bb:cd"}}, false},
		{"yes", Mode{}, true},
		{"52:54:00:aa:bb:cc,", Mode{}, true},
	} {
		got, err := ParseMode(tt.in)
		if (err != nil) != tt.wantErr || (err != nil && !errors.Is(err, ErrBadMode)) {
			t.Errorf("ParseMode(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			continue
		}
		if diff := cmp.Diff(tt.want, got); diff != "" && !tt.wantErr {
			t.Errorf("ParseMode(%q) mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

// testHead is a Head serving TLS on loopback.
type testHead struct {
	*Head
	addr string
	key  clusterkey.Key

	mu     sync.Mutex
	events []string
}

func (h *testHead) eventsText() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.events, "\n")
}

func startHead(t *testing.T, mode Mode, dir string, edit func(*HeadConfig)) *testHead {
	t.Helper()
	id, err := LoadOrCreateIdentity(t.TempDir(), "head")
	if err != nil {
		t.Fatal(err)
	}
	k, _ := clusterkey.Generate()
	th := &testHead{key: k}
	cfg := HeadConfig{Mode: mode, Identity: id, Key: func() clusterkey.Key { return k }, Dir: dir,
		NodeName: boot.NodeName, Logger: slog.New(slog.DiscardHandler),
		Event: func(f string, a ...any) {
			th.mu.Lock()
			th.events = append(th.events, fmt.Sprintf(f, a...))
			th.mu.Unlock()
		}}
	if edit != nil {
		edit(&cfg)
	}
	h, err := NewHead(cfg)
	if err != nil {
		t.Fatal(err)
	}
	th.Head = h
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	th.addr = l.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve() = %v, want nil after cancel", err)
		}
	})
	return th
}

// askFor runs Ask for mac until it returns or d passes; the states it
// reported come back too.
func askFor(h *testHead, fp, mac string, d time.Duration) (clusterkey.Key, []string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var states []string
	k, err := Ask(ctx, AskConfig{Head: h.addr, Fingerprint: fp, MAC: mac, Node: "n", Interval: 50 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), OnState: func(s, _ string) { states = append(states, s) }})
	return k, states, err
}

const (
	mac1 = "52:54:00:00:00:01"
	mac2 = "52:54:00:00:00:02"
)

func TestAuto(t *testing.T) {
	h := startHead(t, Mode{Auto: true}, "", nil)
	k, _, err := askFor(h, h.Fingerprint(), mac1, 10*time.Second)
	if err != nil || k != h.key {
		t.Fatalf("Ask under auto = %v, %v; want the cluster key", k, err)
	}
	e := h.Enrolment()
	if len(e.Machines) != 1 || e.Machines[0].State != api.EnrollAdmitted || e.Machines[0].How != "drift.enroll=auto" || e.Machines[0].Node != "drift-000001" {
		t.Errorf("Enrolment() = %+v, want drift-000001 admitted by auto", e)
	}
}

func TestApprove(t *testing.T) {
	dir := t.TempDir()
	h := startHead(t, Mode{}, dir, nil)
	// Pending: the machine asks and gets no key.
	k, states, err := askFor(h, h.Fingerprint(), mac1, 500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || k != (clusterkey.Key{}) || !cmp.Equal(states, []string{api.EnrollPending}) {
		t.Fatalf("Ask while pending = %v, states %q, %v; want no key, pending, deadline", k, states, err)
	}
	if ev := h.eventsText(); !strings.Contains(ev, "enroll: pending node=drift-000001 mac="+mac1) || !strings.Contains(ev, "drift admit drift-000001") {
		t.Errorf("console: %q, want the pending line that says to drift admit", ev)
	}
	if _, err := h.Decide("drift-000009", true); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("Decide(unknown) = %v, want ErrNotFound", err)
	}
	// Admitted while it asks: it gets the key.
	done := make(chan error, 1)
	var got clusterkey.Key
	go func() {
		var err error
		got, _, err = askFor(h, h.Fingerprint(), mac1, 10*time.Second)
		done <- err
	}()
	time.Sleep(200 * time.Millisecond)
	ms, err := h.Decide("drift-000001", true)
	if err != nil || len(ms) != 1 || ms[0].How != "drift admit" {
		t.Fatalf("Decide(drift-000001, admit) = %+v, %v", ms, err)
	}
	if err := <-done; err != nil || got != h.key {
		t.Fatalf("Ask after drift admit = %v, %v; want the key", got, err)
	}
	// Rejected: told so, no key; the decision is kept for the next head.
	if _, _, err := askFor(h, h.Fingerprint(), mac2, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second machine: %v, want pending", err)
	}
	if _, err := h.Decide(mac2, false); err != nil {
		t.Fatal(err)
	}
	_, states, _ = askFor(h, h.Fingerprint(), mac2, 300*time.Millisecond)
	if !cmp.Equal(states, []string{api.EnrollRefused}) {
		t.Errorf("refused machine saw %q, want refused", states)
	}
	h2, err := NewHead(HeadConfig{Identity: h.cfg.Identity, Key: h.cfg.Key, NodeName: boot.NodeName, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{mac1: api.EnrollAdmitted, mac2: api.EnrollRefused}
	for _, m := range h2.Enrolment().Machines {
		if want[m.MAC] != m.State {
			t.Errorf("after a restart %s is %s, want %s", m.MAC, m.State, want[m.MAC])
		}
		delete(want, m.MAC)
	}
	if len(want) > 0 {
		t.Errorf("after a restart the head forgot %v", want)
	}
}

func TestMACList(t *testing.T) {
	h := startHead(t, Mode{MACs: []string{mac2}}, "", nil)
	if _, _, err := askFor(h, h.Fingerprint(), mac1, 300*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("unlisted machine: %v, want it pending", err)
	}
	if k, _, err := askFor(h, h.Fingerprint(), strings.ToUpper(mac2), 10*time.Second); err != nil || k != h.key {
		t.Errorf("listed machine: %v, %v; want the key", k, err)
	}
	ms, err := h.Decide("all", true)
	if err != nil || len(ms) != 1 || ms[0].MAC != mac1 {
		t.Errorf("Decide(all) = %+v, %v; want the one pending machine", ms, err)
	}
}

func TestWrongHead(t *testing.T) {
	h := startHead(t, Mode{Auto: true}, "", nil)
	other, _ := NewIdentity("impostor")
	k, states, err := askFor(h, Fingerprint(other), mac1, 10*time.Second)
	if !errors.Is(err, ErrWrongHead) || k != (clusterkey.Key{}) || len(states) != 1 || states[0] != "error" {
		t.Errorf("Ask with another fingerprint = %v, %q, %v; want ErrWrongHead at once", k, states, err)
	}
	if n := len(h.Enrolment().Machines); n != 0 {
		t.Errorf("the head recorded %d machines from a client that refused it", n)
	}
}

func TestSpoofedMAC(t *testing.T) {
	h := startHead(t, Mode{Auto: true}, "", func(c *HeadConfig) {
		c.Neighbor = func(netip.Addr) string { return mac2 }
	})
	_, states, err := askFor(h, h.Fingerprint(), mac1, 300*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || !cmp.Equal(states, []string{api.EnrollRefused}) {
		t.Errorf("machine claiming %s from %s: %q, %v; want refused", mac1, mac2, states, err)
	}
}

func TestSecondMachineWhileMember(t *testing.T) {
	h := startHead(t, Mode{Auto: true}, "", func(c *HeadConfig) {
		c.IsMember = func(node string) bool { return node == "drift-000001" }
	})
	if _, _, err := askFor(h, h.Fingerprint(), mac1, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Another key pair with the same MAC while drift-000001 is a member.
	_, states, _ := askFor(h, h.Fingerprint(), mac1, 300*time.Millisecond)
	if !cmp.Equal(states, []string{api.EnrollPending}) || !strings.Contains(h.eventsText(), "WARNING") {
		t.Errorf("second claimant saw %q (console %q), want pending and a warning", states, h.eventsText())
	}
}

func TestIdentityKept(t *testing.T) {
	dir := t.TempDir()
	a, err := LoadOrCreateIdentity(dir, "head")
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreateIdentity(dir, "head")
	if err != nil || Fingerprint(a) != Fingerprint(b) || len(Fingerprint(a)) != 64 {
		t.Errorf("identity read back: %s, %v; want %s", Fingerprint(b), err, Fingerprint(a))
	}
}

// TestAskClusterAfterRekey: a head whose cluster was rekeyed hands out
// its current key with the cluster's ID, which outlives the keys; one
// never rekeyed leaves the ID out, and the machine names the cluster by
// the key.
func TestAskClusterAfterRekey(t *testing.T) {
	const id = "0123456789abcdef"
	h := startHead(t, Mode{Auto: true}, "", func(c *HeadConfig) { c.ClusterID = id })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := AskCluster(ctx, AskConfig{Head: h.addr, Fingerprint: h.Fingerprint(), MAC: mac1, Node: "n", Interval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil || c != (clusterkey.Cluster{ID: id, Key: h.key}) {
		t.Errorf("AskCluster of a rekeyed head = %v, %v; want the key and cluster %s", c, err, id)
	}
	plain := startHead(t, Mode{Auto: true}, "", nil)
	c, err = AskCluster(ctx, AskConfig{Head: plain.addr, Fingerprint: plain.Fingerprint(), MAC: mac1, Node: "n", Interval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil || c != clusterkey.Of(plain.key) {
		t.Errorf("AskCluster of a head never rekeyed = %v, %v; want the key named by its own ID", c, err)
	}
}
