// Package discovery finds the other nodes of a drift cluster on the local
// network with mDNS (grandcat/zeroconf): it announces this node as
// _drift._tcp with a TXT record naming the cluster by its ID, browses for
// the other nodes of the same cluster, and hands their memberlist
// addresses to a callback (membership.Join). Liveness is membership's
// job: discovery only introduces.
package discovery

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/grandcat/zeroconf"
)

// Service is drift's mDNS service type.
const Service = "_drift._tcp"

// Config is what discovery announces and looks for.
type Config struct {
	Self       Record               // this node; Self.ClusterID is the cluster to look for
	Interfaces []string             // interfaces to announce and browse on; nil: every up multicast interface
	Addrs      []string             // this node's IPv4 addresses to announce (change them with SetAddrs); none: browse only
	OnPeers    func(addrs []string) // required: called with host:port memberlist addresses of peers found
	Interval   time.Duration        // length of one browse round; 0: 15s
	Logger     *slog.Logger         // nil: slog.Default()
}

// Discovery announces and browses. Make one with New, then Run it.
type Discovery struct {
	cfg     Config
	log     *slog.Logger
	changed chan struct{}

	mu    sync.Mutex
	addrs []string
	noted map[string]bool // instances already logged as foreign or malformed
}

// New returns a Discovery for cfg.
func New(cfg Config) (*Discovery, error) {
	if _, err := ParseTXT(cfg.Self.TXT()); err != nil {
		return nil, fmt.Errorf("discovery: this node's record: %w", err)
	}
	if cfg.OnPeers == nil {
		return nil, fmt.Errorf("discovery: Config.OnPeers is required")
	}
	if cfg.Interval == 0 {
		cfg.Interval = 15 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Discovery{cfg: cfg, log: log.With("svc", "discovery"), changed: make(chan struct{}, 1),
		addrs: slices.Clone(cfg.Addrs), noted: map[string]bool{}}, nil
}

// SetAddrs replaces the addresses this node announces (after DHCP or
// link-local configuration changed them): Run re-registers and starts a
// new browse round at once.
func (d *Discovery) SetAddrs(addrs []string) {
	d.mu.Lock()
	same := slices.Equal(d.addrs, addrs)
	d.addrs = slices.Clone(addrs)
	d.mu.Unlock()
	if same {
		return
	}
	select {
	case d.changed <- struct{}{}:
	default:
	}
}

// Run announces and browses in rounds until ctx ends.
func (d *Discovery) Run(ctx context.Context) error {
	var srv *zeroconf.Server
	defer func() {
		if srv != nil {
			srv.Shutdown()
		}
	}()
	register := func() {
		if srv != nil {
			srv.Shutdown()
			srv = nil
		}
		var err error
		if srv, err = d.register(); err != nil {
			d.log.Warn("announce", "err", err)
		}
	}
	register()
	for {
		round, cancel := context.WithTimeout(ctx, d.cfg.Interval)
		done := make(chan error, 1)
		go func() { done <- d.browse(round) }()
		var err error
		moved := false
		select {
		case err = <-done: // the round is over, or could not start
		case <-d.changed:
			moved = true
			cancel()
			err = <-done
		}
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case moved:
			register()
		case err != nil:
			d.log.Warn("browse", "err", err)
			select { // no usable interface yet: wait before the next try
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d.cfg.Interval):
			case <-d.changed:
				register()
			}
		}
	}
}

func (d *Discovery) ifaces() ([]net.Interface, error) {
	if d.cfg.Interfaces == nil {
		return nil, nil // zeroconf's default: every up multicast interface
	}
	var out []net.Interface
	for _, name := range d.cfg.Interfaces {
		ifi, err := net.InterfaceByName(name)
		if err != nil {
			return nil, fmt.Errorf("interface %s: %w", name, err)
		}
		out = append(out, *ifi)
	}
	return out, nil
}

// register announces this node on its current addresses, or returns nil
// when it has none.
func (d *Discovery) register() (*zeroconf.Server, error) {
	d.mu.Lock()
	addrs := slices.Clone(d.addrs)
	d.mu.Unlock()
	if len(addrs) == 0 {
		return nil, nil
	}
	ifs, err := d.ifaces()
	if err != nil {
		return nil, err
	}
	self := d.cfg.Self
	srv, err := zeroconf.RegisterProxy(self.Node, Service, "local.", self.MemberlistPort, self.Node, addrs, self.TXT(), ifs)
	if err != nil {
		return nil, fmt.Errorf("announce %s on %v: %w", self.Node, addrs, err)
	}
	d.log.Info("announced", "node", self.Node, "addrs", addrs, "cluster", self.ClusterID)
	return srv, nil
}

// browse runs one browse round: a new resolver, as zeroconf reports each
// instance once per resolver and cannot reuse one after its context ends.
func (d *Discovery) browse(ctx context.Context) error {
	ifs, err := d.ifaces()
	if err != nil {
		return err
	}
	opts := []zeroconf.ClientOption{zeroconf.SelectIPTraffic(zeroconf.IPv4)}
	if ifs != nil {
		opts = append(opts, zeroconf.SelectIfaces(ifs))
	}
	r, err := zeroconf.NewResolver(opts...)
	if err != nil {
		return fmt.Errorf("mdns resolver: %w", err)
	}
	entries := make(chan *zeroconf.ServiceEntry)
	if err := r.Browse(ctx, Service, "local.", entries); err != nil {
		return fmt.Errorf("mdns browse: %w", err)
	}
	for e := range entries { // closed by zeroconf when ctx ends
		if peers := d.accept(e); len(peers) > 0 {
			d.cfg.OnPeers(peers)
		}
	}
	return nil
}

// accept checks one browse result and returns its memberlist addresses,
// or nil for this node, another cluster or a malformed record.
func (d *Discovery) accept(e *zeroconf.ServiceEntry) []string {
	rec, err := ParseTXT(e.Text)
	if err != nil {
		if d.firstNote(e.Instance) {
			d.log.Warn("dropped malformed mDNS entry", "instance", e.Instance, "err", err)
		}
		return nil
	}
	if rec.ClusterID != d.cfg.Self.ClusterID {
		if d.firstNote(e.Instance) {
			d.log.Debug("ignoring node of another cluster", "instance", e.Instance, "cluster", rec.ClusterID)
		}
		return nil
	}
	if rec.Node == d.cfg.Self.Node {
		return nil
	}
	var peers []string
	for _, ip := range e.AddrIPv4 {
		peers = append(peers, net.JoinHostPort(ip.String(), strconv.Itoa(rec.MemberlistPort)))
	}
	if len(peers) > 0 {
		d.log.Debug("found peer", "node", rec.Node, "addrs", peers)
	}
	return peers
}

func (d *Discovery) firstNote(instance string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.noted[instance] {
		return false
	}
	d.noted[instance] = true
	return true
}
