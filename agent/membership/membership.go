// Package membership is the drift cluster's member list: who is in the
// cluster, how to reach them, whether they are alive, and what they offer
// (nodeinfo metadata). It runs hashicorp/memberlist with the cluster key as
// its keyring, so gossip is encrypted and authenticated and a node without
// the key can neither join nor be seen. The agent joins the peers that
// discovery finds and the drift.join= seeds; the API lists Members.
package membership

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/nodeinfo"
	"github.com/hashicorp/memberlist"
)

// DefaultPort is memberlist's port, TCP and UDP.
const DefaultPort = 7946

// Config is what a node needs to be a member.
type Config struct {
	Name          string         // required: unique node name, e.g. drift-a1b2c3
	BindAddr      string         // required: the node's IPv4 address (memberlist's own lookup fails on link-local)
	AdvertiseAddr string         // "": BindAddr
	Port          int            // 0: DefaultPort
	Key           clusterkey.Key // the cluster key: AES-256 keyring, verified both ways
	// Accept are more keys it decrypts with (a rekey under way); nil: none.
	Accept []clusterkey.Key
	// Label is memberlist's label, which every packet carries; "":
	// Label(Key.ID()). Give Label(the cluster's ID): it outlives the keys
	// that drift rekey replaces.
	Label  string
	Seeds  []string     // host:port (or host) joined at start and again whenever the node is alone
	Logger *slog.Logger // nil: slog.Default()

	// Meta samples this node's metadata; nil: no metadata. Run calls it
	// every MetaInterval and re-gossips when the sample Differs.
	Meta         func() nodeinfo.Info
	MetaInterval time.Duration // 0: 5s

	// OnJoinError is called (from Run's goroutine) when joining peers
	// failed: none of addrs answered with this node's key; nil: not called.
	OnJoinError func(addrs []string, err error)

	// OnPeers is called (from Run's goroutine) with the number of alive
	// members other than this node, at start and whenever it changes; nil: not called.
	OnPeers func(n int)

	// OnLighter is called when another member gossips fewer jobs than
	// it did before: it may take work now, and a busy node need not wait
	// for its next look to send some. It runs on memberlist's goroutine
	// with the member list locked, so it must neither block nor call
	// Membership; nil: not called.
	OnLighter func(name string)

	// DeadRetention is how long a dead member stays in Members; 0: 10 minutes.
	DeadRetention time.Duration

	// Tune adjusts memberlist's configuration after drift's defaults are
	// set (tests use it for faster failure detection); nil: drift's LAN timing.
	Tune func(*memberlist.Config)
}

// State is a member's liveness.
type State string

// Member states.
const (
	StateAlive   State = api.NodeAlive
	StateSuspect State = api.NodeSuspect // this node's probes failed; not yet declared dead
	StateDead    State = api.NodeDead    // failed or left; listed for DeadRetention
)

// Member is one node of the cluster as this node sees it.
type Member struct {
	Name    string
	Addr    string // IP address
	Port    int    // memberlist port
	State   State
	Since   time.Time     // when this node saw the state begin
	Info    nodeinfo.Info // last metadata gossiped; zero if none or undecodable
	InfoErr error         // why Info is zero, if its metadata did not decode
	Self    bool          // this node
}

// Membership is a running member list. Make one with New, then Run it.
type Membership struct {
	cfg Config
	log *slog.Logger

	joinCh  chan struct{} // signals Run that pending has addresses
	changed chan struct{} // signals Run that a member changed state
	refresh chan struct{} // asks Run to sample and gossip metadata now

	mu       sync.Mutex
	ml       *memberlist.Memberlist // nil until Run has created it
	keys     *memberlist.Keyring    // the keyring memberlist uses; nil until Run
	meta     []byte                 // this node's encoded metadata
	members  map[string]*Member     // by name, every node ever seen and not yet forgotten
	pending  []string               // addresses to join
	lastPeer int                    // last count passed to OnPeers, -1 before the first

	crash bool // tests: stop without leaving, as a node switched off would
}

// New checks cfg and returns a Membership ready to Run.
func New(cfg Config) (*Membership, error) {
	if cfg.Name == "" {
		return nil, errors.New("membership: Config.Name is required")
	}
	if net.ParseIP(cfg.BindAddr) == nil {
		return nil, fmt.Errorf("membership: Config.BindAddr %q is not an IP address", cfg.BindAddr)
	}
	if cfg.AdvertiseAddr == "" {
		cfg.AdvertiseAddr = cfg.BindAddr
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.MetaInterval == 0 {
		cfg.MetaInterval = 5 * time.Second
	}
	if cfg.DeadRetention == 0 {
		cfg.DeadRetention = 10 * time.Minute
	}
	m := &Membership{
		cfg:      cfg,
		log:      cfg.Logger,
		joinCh:   make(chan struct{}, 1),
		changed:  make(chan struct{}, 1),
		refresh:  make(chan struct{}, 1),
		members:  map[string]*Member{},
		lastPeer: -1,
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("svc", "membership")
	return m, nil
}

// Label is the memberlist label of the cluster of that ID: every packet
// and stream carries it, authenticated by the encryption.
func Label(clusterID string) string { return "drift-" + clusterID }

// memberlistConfig builds memberlist's configuration.
func (m *Membership) memberlistConfig(w io.Writer) (*memberlist.Config, error) {
	c := memberlist.DefaultLANConfig()
	c.Name = m.cfg.Name
	c.BindAddr = m.cfg.BindAddr
	c.BindPort = m.cfg.Port
	c.AdvertiseAddr = m.cfg.AdvertiseAddr
	c.AdvertisePort = m.cfg.Port
	var more [][]byte
	for _, k := range m.cfg.Accept {
		if k != m.cfg.Key {
			more = append(more, slices.Clone(k[:]))
		}
	}
	kr, err := memberlist.NewKeyring(more, m.cfg.Key[:])
	if err != nil {
		return nil, fmt.Errorf("membership keyring: %w", err)
	}
	c.Keyring = kr
	m.mu.Lock()
	m.keys = kr // InstallKey, UseKey, RemoveKey (keyring.go)
	m.mu.Unlock()
	c.GossipVerifyIncoming = true
	c.GossipVerifyOutgoing = true
	c.Label = Label(m.cfg.Key.ID())
	if m.cfg.Label != "" {
		c.Label = m.cfg.Label
	}
	// A node that is switched off must be shown dead within 15 s on a
	// small cluster: cap the suspicion time at 3× its base, not 6×.
	c.SuspicionMaxTimeoutMult = 3
	// A node that comes back with a new address (link-local, a new lease)
	// may take its name back soon after it was declared dead.
	c.DeadNodeReclaimTime = 10 * time.Second
	c.Logger = log.New(w, "", 0)
	c.Delegate = (*delegate)(m)
	c.Events = (*events)(m)
	c.Ping = (*pings)(m)
	if m.cfg.Tune != nil {
		m.cfg.Tune(c)
	}
	return c, nil
}

// Run joins the cluster and serves until ctx ends, then leaves.
func (m *Membership) Run(ctx context.Context) error {
	lw := &logWriter{log: m.log, onSuspect: m.markSuspect}
	mc, err := m.memberlistConfig(lw)
	if err != nil {
		return err
	}
	if m.cfg.Meta != nil {
		m.setMeta(m.cfg.Meta())
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("membership on %s:%d: %w", m.cfg.BindAddr, m.cfg.Port, err)
	}
	m.mu.Lock()
	m.ml = ml
	m.mu.Unlock()
	m.log.Info("membership started", "name", m.cfg.Name, "addr", net.JoinHostPort(m.cfg.AdvertiseAddr, strconv.Itoa(m.cfg.Port)), "cluster", m.cfg.Key.ID())
	m.Join(m.cfg.Seeds)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		m.joinLoop(ctx, ml)
	}()
	m.refreshLoop(ctx, ml)
	wg.Wait()

	if !m.crash {
		if err := ml.Leave(time.Second); err != nil {
			m.log.Debug("leave", "err", err)
		}
	}
	if err := ml.Shutdown(); err != nil {
		m.log.Warn("shutdown memberlist", "err", err)
	}
	return ctx.Err()
}

// refreshLoop re-samples metadata, forgets long-dead members and reports
// the peer count until ctx ends.
func (m *Membership) refreshLoop(ctx context.Context, ml *memberlist.Memberlist) {
	t := time.NewTicker(m.cfg.MetaInterval)
	defer t.Stop()
	seeds := time.NewTicker(10 * time.Second)
	defer seeds.Stop()
	m.reportPeers()
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.changed:
			m.reportPeers()
		case <-seeds.C:
			if len(m.cfg.Seeds) > 0 && ml.NumMembers() <= 1 {
				m.Join(m.cfg.Seeds)
			}
		case <-t.C:
			m.forgetDead(time.Now())
			m.gossipMeta(ml)
		case <-m.refresh:
			m.gossipMeta(ml)
		}
	}
}

// Refresh samples this node's metadata now, instead of at the next
// MetaInterval, and gossips it if it changed: the agent calls it when its
// load changes, so that balancing acts on fresh figures. It does not
// block.
func (m *Membership) Refresh() {
	select {
	case m.refresh <- struct{}{}:
	default:
	}
}

func (m *Membership) gossipMeta(ml *memberlist.Memberlist) {
	if m.cfg.Meta == nil {
		return
	}
	if m.setMeta(m.cfg.Meta()) {
		if err := ml.UpdateNode(time.Second); err != nil {
			m.log.Debug("gossip metadata", "err", err)
		}
	}
}

// setMeta stores i as this node's metadata and reports whether it differs
// materially from what was gossiped before.
func (m *Membership) setMeta(i nodeinfo.Info) bool {
	b := i.Encode()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.meta != nil {
		if old, err := nodeinfo.Decode(m.meta); err == nil && !i.Differs(old) {
			return false
		}
	}
	m.meta = b
	return true
}

// Join asks Run to join the members at addrs (host:port, or host for the
// default port). It does not block; addresses of members already alive
// are skipped, so calling it with every peer discovery reports is cheap.
func (m *Membership) Join(addrs []string) {
	if len(addrs) == 0 {
		return
	}
	m.mu.Lock()
	for _, a := range addrs {
		if !slices.Contains(m.pending, a) {
			m.pending = append(m.pending, a)
		}
	}
	m.mu.Unlock()
	select {
	case m.joinCh <- struct{}{}:
	default:
	}
}

func (m *Membership) joinLoop(ctx context.Context, ml *memberlist.Memberlist) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.joinCh:
		}
		m.mu.Lock()
		addrs := m.pending
		m.pending = nil
		m.mu.Unlock()
		var todo []string
		for _, a := range addrs {
			if !m.isAliveAddr(a) {
				todo = append(todo, a)
			}
		}
		if len(todo) == 0 {
			continue
		}
		n, err := ml.Join(todo)
		if err != nil {
			m.log.Warn("join", "addrs", todo, "joined", n, "err", err)
			if n == 0 && m.cfg.OnJoinError != nil && ml.NumMembers() <= 1 {
				m.cfg.OnJoinError(todo, err)
			}
		} else {
			m.log.Debug("joined", "addrs", todo)
		}
	}
}

// isAliveAddr reports whether addr (host:port or host) is an alive member
// or this node.
func (m *Membership) isAliveAddr(addr string) bool {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		host, port = addr, strconv.Itoa(DefaultPort)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, mb := range m.members {
		if mb.State != StateDead && mb.Addr == host && strconv.Itoa(mb.Port) == port {
			return true
		}
	}
	return host == m.cfg.AdvertiseAddr && port == strconv.Itoa(m.cfg.Port)
}

// Members returns every member this node knows, itself included, sorted by
// name: alive and suspect ones, and dead ones for DeadRetention.
func (m *Membership) Members() []Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Member, 0, len(m.members))
	for _, mb := range m.members {
		out = append(out, *mb)
	}
	slices.SortFunc(out, func(a, b Member) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out
}

// Alive returns the number of alive or suspect members, this node included.
func (m *Membership) Alive() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, mb := range m.members {
		if mb.State != StateDead {
			n++
		}
	}
	return n
}

func (m *Membership) reportPeers() {
	n := m.Alive() - 1
	if n < 0 {
		n = 0 // not even ourselves yet
	}
	m.mu.Lock()
	changed := n != m.lastPeer
	m.lastPeer = n
	m.mu.Unlock()
	if changed {
		m.log.Info("peers", "n", n)
		if m.cfg.OnPeers != nil {
			m.cfg.OnPeers(n)
		}
	}
}

func (m *Membership) forgetDead(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, mb := range m.members {
		if mb.State == StateDead && now.Sub(mb.Since) > m.cfg.DeadRetention {
			delete(m.members, name)
		}
	}
}

// upsert records n in the given state.
func (m *Membership) upsert(n *memberlist.Node, st State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mb, ok := m.members[n.Name]
	if !ok {
		mb = &Member{Name: n.Name, Self: n.Name == m.cfg.Name}
		m.members[n.Name] = mb
	}
	if !ok || mb.State != st {
		mb.State = st
		mb.Since = time.Now()
		m.signalChange()
	}
	mb.Addr = n.Addr.String()
	mb.Port = int(n.Port)
	if len(n.Meta) > 0 {
		before := mb.Info
		mb.Info, mb.InfoErr = nodeinfo.Decode(n.Meta)
		if ok && !mb.Self && mb.InfoErr == nil && mb.Info.Jobs < before.Jobs && m.cfg.OnLighter != nil {
			m.cfg.OnLighter(n.Name)
		}
	}
}

// signalChange wakes Run to report the peer count.
func (m *Membership) signalChange() {
	select {
	case m.changed <- struct{}{}:
	default:
	}
}

// markSuspect is called when memberlist logs that its probes of name failed.
func (m *Membership) markSuspect(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb, ok := m.members[name]; ok && mb.State == StateAlive {
		mb.State = StateSuspect
		mb.Since = time.Now()
	}
}

// markAlive clears a suspicion after a successful probe.
func (m *Membership) markAlive(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if mb, ok := m.members[name]; ok && mb.State == StateSuspect {
		mb.State = StateAlive
		mb.Since = time.Now()
	}
}

// delegate gives memberlist this node's metadata.
type delegate Membership

func (d *delegate) NodeMeta(limit int) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.meta) > limit { // cannot happen: nodeinfo.MaxSize is memberlist's limit
		return nil
	}
	return slices.Clone(d.meta)
}
func (d *delegate) NotifyMsg([]byte)                           {}
func (d *delegate) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (d *delegate) LocalState(join bool) []byte                { return nil }
func (d *delegate) MergeRemoteState(buf []byte, join bool)     {}

// events tracks joins, updates and deaths.
type events Membership

func (e *events) NotifyJoin(n *memberlist.Node)   { (*Membership)(e).upsert(n, StateAlive) }
func (e *events) NotifyUpdate(n *memberlist.Node) { (*Membership)(e).upsert(n, StateAlive) }
func (e *events) NotifyLeave(n *memberlist.Node) {
	(*Membership)(e).upsert(n, StateDead)
	e.log.Info("member dead", "name", n.Name, "addr", n.Address())
}

// pings clears suspicions when a probe succeeds.
type pings Membership

func (p *pings) AckPayload() []byte { return nil }
func (p *pings) NotifyPingComplete(other *memberlist.Node, rtt time.Duration, payload []byte) {
	(*Membership)(p).markAlive(other.Name)
}

// started reports whether Run has created the member list.
func (m *Membership) started() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ml != nil
}
