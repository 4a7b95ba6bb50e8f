package netboot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/driftcluster/drift/agent/internal/atomicfile"
)

// Lease is one address the server has handed out (or remembers having
// handed out: an expired lease keeps its address for the same MAC until the
// pool needs it).
type Lease struct {
	MAC      net.HardwareAddr
	Addr     netip.Addr
	Hostname string    // DHCP option 12 as the client sent it; "": none
	Expiry   time.Time // when the lease ends
}

// entryState says how firmly an address is held.
type entryState uint8

const (
	stateOffered  entryState = iota // OFFERed, not REQUESTed: a short reservation, the first reclaimed
	stateBound                      // ACKed: a lease
	stateDeclined                   // a client found the address in use (DECLINE): held by nobody for a while
)

func (s entryState) String() string {
	switch s {
	case stateOffered:
		return "offered"
	case stateBound:
		return "bound"
	case stateDeclined:
		return "declined"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// entry is one address in the table. A declined entry has no MAC.
type entry struct {
	mac      string // net.HardwareAddr.String(); "" for declined addresses
	addr     netip.Addr
	hostname string
	expiry   time.Time
	state    entryState
}

func (e *entry) expired(now time.Time) bool { return !now.Before(e.expiry) }

// leaseTable holds every address of the pool that is offered, leased or
// declined. Invariants (checked by the fuzz test): every entry is in byAddr
// under its own address; an entry with a MAC is in byMAC under that MAC and
// nothing else is; so no address belongs to two MACs and no MAC holds two
// addresses. The table never holds more entries than the pool has
// addresses. It is not safe for concurrent use.
type leaseTable struct {
	byMAC  map[string]*entry
	byAddr map[netip.Addr]*entry
}

func newLeaseTable() *leaseTable {
	return &leaseTable{byMAC: map[string]*entry{}, byAddr: map[netip.Addr]*entry{}}
}

func (t *leaseTable) remove(e *entry) {
	delete(t.byAddr, e.addr)
	if e.mac != "" && t.byMAC[e.mac] == e {
		delete(t.byMAC, e.mac)
	}
}

// put records e, dropping whatever held its address or its MAC before.
func (t *leaseTable) put(e *entry) {
	if old := t.byAddr[e.addr]; old != nil {
		t.remove(old)
	}
	if e.mac != "" {
		if old := t.byMAC[e.mac]; old != nil {
			t.remove(old)
		}
		t.byMAC[e.mac] = e
	}
	t.byAddr[e.addr] = e
}

// holdBack marks a as used by a host the server did not lease it to (a
// probe found it), for the pool's declineTime, as a DECLINE does.
func (t *leaseTable) holdBack(p *pool, a netip.Addr, now time.Time) {
	t.put(&entry{addr: a, expiry: now.Add(p.declineTime), state: stateDeclined})
}

// leases lists the bound leases, sorted by address.
func (t *leaseTable) leases() []Lease {
	var ls []Lease
	for _, e := range t.byAddr {
		if e.state != stateBound {
			continue
		}
		mac, _ := net.ParseMAC(e.mac)
		ls = append(ls, Lease{MAC: mac, Addr: e.addr, Hostname: e.hostname, Expiry: e.expiry})
	}
	slices.SortFunc(ls, func(a, b Lease) int { return a.Addr.Compare(b.Addr) })
	return ls
}

// pool is the address range and the options the server hands out.
type pool struct {
	prefix      netip.Prefix // masked
	server      netip.Addr   // the server's own address: never handed out
	first, last netip.Addr   // the usable range: prefix minus network and broadcast
	size        int          // addresses in [first, last] minus the server's
	leaseTime   time.Duration
	offerTime   time.Duration // how long an unrequested OFFER reserves its address
	declineTime time.Duration // how long a DECLINEd address stays out of the pool
	router      netip.Addr    // invalid: no router option
	dns         []netip.Addr
}

// newPool checks the range: IPv4, between /16 and /30, and the server's
// address inside it.
func newPool(prefix netip.Prefix, server netip.Addr, leaseTime time.Duration) (*pool, error) {
	if !prefix.Addr().Is4() || prefix.Bits() < 16 || prefix.Bits() > 30 {
		return nil, fmt.Errorf("range %s: want an IPv4 prefix from /16 to /30", prefix)
	}
	prefix = prefix.Masked()
	first := prefix.Addr().Next()
	last := lastAddr(prefix).Prev()
	if !server.Is4() || server.Less(first) || last.Less(server) {
		return nil, fmt.Errorf("server address %s: not a host address in range %s", server, prefix)
	}
	size := 1<<(32-prefix.Bits()) - 3
	return &pool{
		prefix: prefix, server: server, first: first, last: last, size: size,
		leaseTime: leaseTime, offerTime: 30 * time.Second, declineTime: 10 * time.Minute,
	}, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// contains reports whether a may be handed out.
func (p *pool) contains(a netip.Addr) bool {
	return a.Is4() && !a.Less(p.first) && !p.last.Less(a) && a != p.server
}

// free reports whether a may be given to mac without taking anything from
// a live lease or a live reservation of another client.
func (t *leaseTable) free(p *pool, a netip.Addr, mac string, now time.Time) bool {
	if !p.contains(a) {
		return false
	}
	e := t.byAddr[a]
	return e == nil || e.mac == mac || e.expired(now)
}

// allocate picks an address for a client that holds none: want if it is
// free, else the lowest never-used address, else one reclaimed from the
// table: expired reservations and declines first, then expired leases
// (oldest first), then the oldest live OFFER (offers are not leases, so a
// flood of DISCOVERs from invented MACs cannot keep real nodes out). Live
// leases and live declines are never taken. ok is false when the pool is
// exhausted. The work is bounded by the pool's size.
func (t *leaseTable) allocate(p *pool, want netip.Addr, mac string, now time.Time) (netip.Addr, bool) {
	if want.IsValid() && t.free(p, want, mac, now) {
		return want, true
	}
	if len(t.byAddr) < p.size {
		for a := p.first; !p.last.Less(a); a = a.Next() {
			if a != p.server && t.byAddr[a] == nil {
				return a, true
			}
		}
	}
	rank := func(e *entry) int {
		switch {
		case e.expired(now) && e.state != stateBound:
			return 0
		case e.expired(now):
			return 1
		case e.state == stateOffered:
			return 2
		}
		return -1 // live lease or live decline: not reclaimable
	}
	var victim *entry
	for _, e := range t.byAddr {
		r := rank(e)
		if r < 0 {
			continue
		}
		if victim == nil || r < rank(victim) || r == rank(victim) && e.expiry.Before(victim.expiry) {
			victim = e
		}
	}
	if victim == nil {
		return netip.Addr{}, false
	}
	t.remove(victim)
	return victim.addr, true
}

// leaseFile is the JSON form of the lease file.
type leaseFile struct {
	Leases []leaseRecord `json:"leases"`
}

type leaseRecord struct {
	MAC      string    `json:"mac"`
	Addr     string    `json:"addr"`
	Hostname string    `json:"hostname,omitempty"`
	Expiry   time.Time `json:"expiry"`
}

// marshalLeases encodes the bound leases (offers are not remembered).
func (t *leaseTable) marshalLeases() ([]byte, error) {
	f := leaseFile{Leases: []leaseRecord{}}
	for _, l := range t.leases() {
		f.Leases = append(f.Leases, leaseRecord{MAC: l.MAC.String(), Addr: l.Addr.String(), Hostname: l.Hostname, Expiry: l.Expiry.UTC()})
	}
	return json.MarshalIndent(f, "", "  ")
}

// loadLeases reads the bound leases of a lease file into t, keeping those
// that fit p (a lease outside the range, on the server's address, or
// colliding with one already loaded is skipped and reported). A missing
// file is an empty table.
func (t *leaseTable) loadLeases(path string, p *pool) (skipped []string, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lease file: %w", err)
	}
	var f leaseFile
	if err := json.NewDecoder(bytes.NewReader(b)).Decode(&f); err != nil {
		return nil, fmt.Errorf("lease file %s: %w", path, err)
	}
	// Latest expiry first, so that of two records for one address or one
	// MAC the fresher wins.
	slices.SortFunc(f.Leases, func(a, b leaseRecord) int { return b.Expiry.Compare(a.Expiry) })
	for _, r := range f.Leases {
		mac, err1 := net.ParseMAC(r.MAC)
		addr, err2 := netip.ParseAddr(r.Addr)
		switch {
		case err1 != nil || len(mac) != 6 || err2 != nil:
			skipped = append(skipped, fmt.Sprintf("%s %s: malformed", r.MAC, r.Addr))
		case !p.contains(addr):
			skipped = append(skipped, fmt.Sprintf("%s %s: not in range %s or the server's address", r.MAC, r.Addr, p.prefix))
		case t.byAddr[addr] != nil || t.byMAC[mac.String()] != nil:
			skipped = append(skipped, fmt.Sprintf("%s %s: duplicate", r.MAC, r.Addr))
		default:
			t.put(&entry{mac: mac.String(), addr: addr, hostname: r.Hostname, expiry: r.Expiry, state: stateBound})
		}
	}
	return skipped, nil
}

// writeFileAtomic writes b to path whole or not at all.
func writeFileAtomic(path string, b []byte) error { return atomicfile.Write(path, b, 0o600) }

// sortedEntries is for tests and logs: the table in address order.
func (t *leaseTable) sortedEntries() []*entry {
	es := make([]*entry, 0, len(t.byAddr))
	for _, e := range t.byAddr {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b *entry) int { return a.addr.Compare(b.addr) })
	return es
}
