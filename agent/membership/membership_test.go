package membership

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/nodeinfo"
	"github.com/hashicorp/memberlist"
)

// fastTiming makes failure detection take a second or two instead of ten.
func fastTiming(c *memberlist.Config) {
	c.ProbeInterval = 200 * time.Millisecond
	c.ProbeTimeout = 100 * time.Millisecond
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.SuspicionMult = 2
	c.SuspicionMaxTimeoutMult = 2
	c.TCPTimeout = time.Second
	c.GossipToTheDeadTime = 2 * time.Second
	c.DeadNodeReclaimTime = time.Second
}

// handedOut holds the ports freePort has returned, so that two agents
// started in a row never get the same one before either has bound it.
var handedOut sync.Map

// freePort returns a port free for both TCP and UDP on 127.0.0.1.
func freePort(t testing.TB) int {
	t.Helper()
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		if _, dup := handedOut.LoadOrStore(port, true); !dup {
			return port
		}
	}
	t.Fatal("no free port for TCP and UDP on 127.0.0.1")
	return 0
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
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

// agent is one member running in the test.
type agent struct {
	m      *Membership
	addr   string
	logs   *syncBuffer
	peers  atomic.Int64
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
	jobs   atomic.Int64

	lighterMu sync.Mutex
	lighter   []string // the peers OnLighter named, in order
}

// lighters is what OnLighter was called with so far.
func (a *agent) lighters() []string {
	a.lighterMu.Lock()
	defer a.lighterMu.Unlock()
	return slices.Clone(a.lighter)
}

func startAgent(t testing.TB, name string, key clusterkey.Key, port int, tune func(*memberlist.Config)) *agent {
	t.Helper()
	return startAgentWith(t, name, key, port, tune, 200*time.Millisecond)
}

func startAgentWith(t testing.TB, name string, key clusterkey.Key, port int, tune func(*memberlist.Config), metaInterval time.Duration) *agent {
	t.Helper()
	a := &agent{logs: &syncBuffer{}, done: make(chan error, 1)}
	a.peers.Store(-1)
	a.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	m, err := New(Config{
		Name:     name,
		BindAddr: "127.0.0.1",
		Port:     port,
		Key:      key,
		Logger:   slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Meta: func() nodeinfo.Info {
			return nodeinfo.Info{Cores: 2, Role: "worker", Version: "test", Jobs: int(a.jobs.Load()), APIPort: 7947}
		},
		MetaInterval: metaInterval,
		OnPeers:      func(n int) { a.peers.Store(int64(n)) },
		OnLighter: func(name string) {
			a.lighterMu.Lock()
			a.lighter = append(a.lighter, name)
			a.lighterMu.Unlock()
		},
		Tune: tune,
	})
	if err != nil {
		t.Fatal(err)
	}
	a.m = m
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() { a.done <- m.Run(ctx) }()
	t.Cleanup(a.stop)
	waitFor(t, 5*time.Second, name+" listening\n"+a.logs.String(), m.started)
	return a
}

// stop ends the agent's Run and waits for it; safe to call twice.
func (a *agent) stop() {
	a.once.Do(func() {
		a.cancel()
		if err := <-a.done; err != nil && err != context.Canceled {
			panic(fmt.Sprintf("Run = %v", err))
		}
	})
}

// waitFor polls cond until it holds or d passes.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func states(a *agent) map[string]State {
	out := map[string]State{}
	for _, m := range a.m.Members() {
		out[m.Name] = m.State
	}
	return out
}

func mustKey(t testing.TB) clusterkey.Key {
	t.Helper()
	k, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestClusterConverges(t *testing.T) {
	key := mustKey(t)
	const n = 4
	var agents []*agent
	for i := range n {
		a := startAgent(t, fmt.Sprintf("drift-%02d", i), key, freePort(t), fastTiming)
		agents = append(agents, a)
		if i > 0 {
			a.m.Join([]string{agents[0].addr})
		}
	}
	waitFor(t, 15*time.Second, "every agent sees 4 alive members with metadata", func() bool {
		for _, a := range agents {
			ms := a.m.Members()
			if len(ms) != n {
				return false
			}
			for _, m := range ms {
				if m.State != StateAlive || m.Info.Role != "worker" || m.Addr != "127.0.0.1" {
					return false
				}
			}
		}
		return true
	})
	for i, a := range agents {
		waitFor(t, 2*time.Second, "OnPeers reports 3", func() bool { return a.peers.Load() == n-1 })
		self := 0
		for _, m := range a.m.Members() {
			if m.Self {
				self++
				if m.Name != fmt.Sprintf("drift-%02d", i) {
					t.Errorf("agent %d: Self member is %q", i, m.Name)
				}
			}
		}
		if self != 1 {
			t.Errorf("agent %d: %d members marked Self, want 1", i, self)
		}
	}

	// Metadata stays fresh: a job started on agent 3 shows on agent 0.
	agents[3].jobs.Store(5)
	waitFor(t, 10*time.Second, "agent 0 sees agent 3's jobs=5", func() bool {
		for _, m := range agents[0].m.Members() {
			if m.Name == "drift-03" {
				return m.Info.Jobs == 5
			}
		}
		return false
	})

	// Joining members already listed is a no-op, not an error.
	agents[1].m.Join([]string{agents[0].addr, agents[2].addr})
	time.Sleep(300 * time.Millisecond)
	if strings.Contains(agents[1].logs.String(), "level=WARN msg=join") {
		t.Errorf("re-joining known members logged a warning:\n%s", agents[1].logs)
	}
}

func TestWrongKeyRefused(t *testing.T) {
	key, other := mustKey(t), mustKey(t)
	a := startAgent(t, "drift-good-a", key, freePort(t), fastTiming)
	b := startAgent(t, "drift-good-b", key, freePort(t), fastTiming)
	b.m.Join([]string{a.addr})
	waitFor(t, 10*time.Second, "the two good agents see each other\n"+a.logs.String(), func() bool { return a.m.Alive() == 2 && b.m.Alive() == 2 })

	tests := []struct {
		name string
		tune func(*memberlist.Config)
	}{
		{"other key", fastTiming},
		// Same label as the cluster, so only the key tells it apart.
		{"other key, same label", func(c *memberlist.Config) { fastTiming(c); c.Label = Label(key.ID()) }},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bad := startAgent(t, fmt.Sprintf("drift-bad-%d", i), other, freePort(t), tt.tune)
			bad.m.Join([]string{a.addr, b.addr})
			waitFor(t, 10*time.Second, "a refusal logged by the good agents", func() bool {
				return strings.Contains(a.logs.String()+b.logs.String(), "refused packet from 127.0.0.1")
			})
			time.Sleep(time.Second) // gossip time, in case it were to leak in
			for _, g := range []*agent{a, b} {
				if st := states(g); len(st) != 2 {
					t.Errorf("good agent lists %v, want only the two good agents", st)
				}
			}
			if st := states(bad); len(st) != 1 {
				t.Errorf("bad agent lists %v, want only itself", st)
			}
			bad.stop()
		})
	}
}

func TestFailureDetection(t *testing.T) {
	key := mustKey(t)
	ports := []int{freePort(t), freePort(t), freePort(t)}
	var agents []*agent
	for i, p := range ports {
		a := startAgent(t, fmt.Sprintf("drift-f%d", i), key, p, fastTiming)
		agents = append(agents, a)
		if i > 0 {
			a.m.Join([]string{agents[0].addr})
		}
	}
	waitFor(t, 10*time.Second, "3 alive members everywhere", func() bool {
		return agents[0].m.Alive() == 3 && agents[1].m.Alive() == 3 && agents[2].m.Alive() == 3
	})

	// Switch drift-f2 off: no leave message, it just stops answering.
	agents[2].m.crash = true
	agents[2].stop()
	for _, a := range agents[:2] {
		waitFor(t, 10*time.Second, "drift-f2 shown dead", func() bool { return states(a)["drift-f2"] == StateDead })
		waitFor(t, 2*time.Second, "OnPeers reports 1", func() bool { return a.peers.Load() == 1 })
	}
	if !strings.Contains(agents[0].logs.String()+agents[1].logs.String(), "member dead") {
		t.Errorf("no member dead log line")
	}

	// It comes back with the same name and address, and is alive again.
	back := startAgent(t, "drift-f2", key, ports[2], fastTiming)
	back.m.Join([]string{agents[0].addr})
	for _, a := range agents[:2] {
		waitFor(t, 15*time.Second, "drift-f2 alive again", func() bool { return states(a)["drift-f2"] == StateAlive })
	}
}

func TestForgetDead(t *testing.T) {
	m, err := New(Config{Name: "n", BindAddr: "127.0.0.1", DeadRetention: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	m.members["old"] = &Member{Name: "old", State: StateDead, Since: now.Add(-2 * time.Minute)}
	m.members["new"] = &Member{Name: "new", State: StateDead, Since: now.Add(-30 * time.Second)}
	m.members["up"] = &Member{Name: "up", State: StateAlive, Since: now.Add(-time.Hour)}
	m.forgetDead(now)
	var got []string
	for _, mb := range m.Members() {
		got = append(got, mb.Name)
	}
	if want := "new,up"; strings.Join(got, ",") != want {
		t.Errorf("after forgetDead: members %v, want %s", got, want)
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no name", Config{BindAddr: "127.0.0.1"}},
		{"no address", Config{Name: "n"}},
		{"host name address", Config{Name: "n", BindAddr: "localhost"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.cfg); err == nil {
				t.Errorf("New(%+v) = nil error, want one", tt.cfg)
			}
		})
	}
}

func TestLogWriter(t *testing.T) {
	tests := []struct {
		name    string
		line    string
		want    string // substring of the slog output
		suspect string
	}{
		{"decrypt packet", "[ERR] memberlist: Decrypt packet failed: no installed keys could decrypt the message from=10.0.0.9:7946",
			`level=WARN msg="refused packet from 10.0.0.9: not encrypted with this cluster's key"`, ""},
		{"stream", "[ERR] memberlist: failed to receive: no installed keys could decrypt the message from=10.0.0.8:51234",
			`msg="refused packet from 10.0.0.8: not encrypted with this cluster's key"`, ""},
		{"label", `[ERR] memberlist: discarding packet with unacceptable label "drift-abc": from=10.0.0.7:7946`,
			`msg="refused packet from 10.0.0.7: it belongs to another drift cluster`, ""},
		{"plaintext", "[ERR] memberlist: failed to receive: Encryption is configured but remote state is not encrypted from=10.0.0.6:4000",
			`msg="refused packet from 10.0.0.6: not encrypted with this cluster's key"`, ""},
		{"suspect", "[INFO] memberlist: Suspect drift-a1 has failed, no acks received", `level=INFO msg="Suspect drift-a1 has failed`, "drift-a1"},
		{"debug", "[DEBUG] memberlist: Initiating push/pull sync with: x 1.2.3.4:5", "level=DEBUG", ""},
		{"unknown", "something odd", `level=INFO msg="something odd"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			var suspect string
			w := &logWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), onSuspect: func(n string) { suspect = n }}
			fmt.Fprintln(w, tt.line)
			if !strings.Contains(buf.String(), tt.want) {
				t.Errorf("log of %q = %q, want it to contain %q", tt.line, buf.String(), tt.want)
			}
			if suspect != tt.suspect {
				t.Errorf("log of %q: suspect %q, want %q", tt.line, suspect, tt.suspect)
			}
		})
	}
	// The same host is warned about once per period, then at debug level.
	var buf bytes.Buffer
	w := &logWriter{log: slog.New(slog.NewTextHandler(&buf, nil))}
	line := "[ERR] memberlist: Decrypt packet failed: x from=10.0.0.9:7946"
	w.line(line, time.Unix(100, 0))
	w.line(line, time.Unix(101, 0))
	w.line(line, time.Unix(200, 0))
	if n := strings.Count(buf.String(), "refused packet"); n != 2 {
		t.Errorf("3 refusals within 100 s logged %d warnings, want 2:\n%s", n, buf.String())
	}
}

// joinedPair starts drift-a and drift-b, which gossip their metadata
// every hour unless refreshed, and waits until they see each other.
func joinedPair(t *testing.T) (a, b *agent) {
	t.Helper()
	key := mustKey(t)
	a = startAgentWith(t, "drift-a", key, freePort(t), fastTiming, time.Hour)
	b = startAgentWith(t, "drift-b", key, freePort(t), fastTiming, time.Hour)
	b.m.Join([]string{a.addr})
	waitFor(t, 5*time.Second, "a and b see each other", func() bool { return a.peers.Load() == 1 && b.peers.Load() == 1 })
	return a, b
}

// jobsOf is the jobs this agent last heard the member name gossip; -1:
// no such member.
func (a *agent) jobsOf(name string) int {
	for _, m := range a.m.Members() {
		if m.Name == name {
			return m.Info.Jobs
		}
	}
	return -1
}

// Refresh gossips a load change at once, without waiting for the next
// metadata interval.
func TestRefreshGossipsAtOnce(t *testing.T) {
	a, b := joinedPair(t)
	b.jobs.Store(3)
	time.Sleep(500 * time.Millisecond)
	if n := a.jobsOf("drift-b"); n != 0 {
		t.Fatalf("a sees b's jobs=%d before b refreshed, want 0 (the interval is an hour)", n)
	}
	b.m.Refresh()
	waitFor(t, 5*time.Second, "a sees b's jobs=3 after Refresh", func() bool { return a.jobsOf("drift-b") == 3 })
}

// TestLighterPeerReported: a peer that gossips fewer jobs than before is
// named to OnLighter (its busy peers may send it work at once); one that
// gossips more, or the same, is not.
func TestLighterPeerReported(t *testing.T) {
	a, b := joinedPair(t)
	for _, step := range []struct {
		jobs int64
		want []string
	}{{3, nil}, {1, []string{"drift-b"}}, {2, []string{"drift-b"}}, {0, []string{"drift-b", "drift-b"}}} {
		b.jobs.Store(step.jobs)
		b.m.Refresh()
		waitFor(t, 5*time.Second, fmt.Sprintf("a sees b's jobs=%d", step.jobs), func() bool { return a.jobsOf("drift-b") == int(step.jobs) })
		if got := a.lighters(); !slices.Equal(got, step.want) {
			t.Fatalf("after b gossiped jobs=%d: OnLighter named %q, want %q", step.jobs, got, step.want)
		}
	}
	if got := b.lighters(); len(got) != 0 {
		t.Errorf("b's OnLighter named %q: a's jobs never fell", got)
	}
}
