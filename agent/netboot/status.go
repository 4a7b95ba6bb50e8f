package netboot

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Stage is how far a network-booting machine got, as the head saw it.
type Stage string

// The stages in boot order. StageJoined is not recorded here: the agent
// knows it from the cluster's members (a member named after the MAC).
const (
	StageDHCP      Stage = "dhcp"        // got DHCP boot options
	StageIPXE      Stage = "ipxe-binary" // fetched undionly.kpxe or ipxe.efi over TFTP
	StageScript    Stage = "boot-script" // fetched boot.ipxe over HTTP
	StageKernel    Stage = "kernel"      // fetched the kernel over HTTP
	StageInitramfs Stage = "initramfs"   // fetched the initramfs over HTTP
	StageJoined    Stage = "joined"      // a cluster member carries its name
)

// Machine is one machine that network-booted from the head.
type Machine struct {
	MAC   string
	Arch  string     // "bios", "uefi-x64"...; "" if it never asked DHCP here
	Addr  netip.Addr // its address, once known
	Stage Stage      // the last stage it reached
	At    time.Time  // when it reached it
}

// DefaultMaxMachines bounds a Tracker: a flood of DISCOVERs from random
// MACs must not grow the head's memory without end.
const DefaultMaxMachines = 1024

// Tracker records the machines that network-boot from the head: the
// DHCP handlers, TFTP and HTTP report to it. TFTP and HTTP see only an
// address; the Tracker maps it to a MAC through what DHCP told it, else
// the kernel's neighbour table. Safe for concurrent use.
type Tracker struct {
	// Max is the number of machines kept; the least recently seen goes
	// first. 0: DefaultMaxMachines.
	Max int
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Neighbor maps an address to a MAC ("" if unknown); nil: the
	// kernel's ARP table (/proc/net/arp).
	Neighbor func(netip.Addr) string
	// OnStage is called, without the Tracker's lock, each time a machine
	// reaches a stage (the agent records it as an event); nil: nothing.
	OnStage func(mac string, stage Stage)

	mu     sync.Mutex
	byMAC  map[string]*Machine
	byAddr map[netip.Addr]string

	tftpBytes, httpBytes atomic.Int64
}

func (t *Tracker) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

// DHCP records that mac (firmware arch) was given boot options; addr is
// its address if the reply gave one.
func (t *Tracker) DHCP(mac, arch string, addr netip.Addr) {
	defer t.reached(mac, StageDHCP)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.get(mac)
	m.Arch, m.Stage, m.At = arch, StageDHCP, t.now()
	if addr.IsValid() {
		t.setAddr(m, addr)
	}
}

// Served records that the machine at addr fetched the file of stage.
func (t *Tracker) Served(addr netip.Addr, stage Stage) {
	mac := t.macOf(addr)
	if mac == "" {
		return
	}
	defer t.reached(mac, stage)
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.get(mac)
	t.setAddr(m, addr)
	m.Stage, m.At = stage, t.now()
}

// reached calls OnStage; deferred before the lock is taken, it runs
// after the lock is released.
func (t *Tracker) reached(mac string, stage Stage) {
	if t.OnStage != nil {
		t.OnStage(mac, stage)
	}
}

// AddBytes counts bytes served by protocol ("tftp" or "http").
func (t *Tracker) AddBytes(proto string, n int64) {
	switch proto {
	case "tftp":
		t.tftpBytes.Add(n)
	case "http":
		t.httpBytes.Add(n)
	}
}

// Bytes returns the bytes served over TFTP and HTTP.
func (t *Tracker) Bytes() (tftp, http int64) { return t.tftpBytes.Load(), t.httpBytes.Load() }

// Machines lists the machines seen, most recent first.
func (t *Tracker) Machines() []Machine {
	t.mu.Lock()
	out := make([]Machine, 0, len(t.byMAC))
	for _, m := range t.byMAC {
		out = append(out, *m)
	}
	t.mu.Unlock()
	slices.SortFunc(out, func(a, b Machine) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		return strings.Compare(a.MAC, b.MAC)
	})
	return out
}

// get returns mac's entry, making room for it if new. t.mu is held.
func (t *Tracker) get(mac string) *Machine {
	if t.byMAC == nil {
		t.byMAC, t.byAddr = map[string]*Machine{}, map[netip.Addr]string{}
	}
	if m := t.byMAC[mac]; m != nil {
		return m
	}
	max := t.Max
	if max <= 0 {
		max = DefaultMaxMachines
	}
	for len(t.byMAC) >= max {
		var oldest *Machine
		for _, m := range t.byMAC {
			if oldest == nil || m.At.Before(oldest.At) {
				oldest = m
			}
		}
		delete(t.byMAC, oldest.MAC)
		if t.byAddr[oldest.Addr] == oldest.MAC {
			delete(t.byAddr, oldest.Addr)
		}
	}
	m := &Machine{MAC: mac}
	t.byMAC[mac] = m
	return m
}

func (t *Tracker) setAddr(m *Machine, addr netip.Addr) {
	if m.Addr.IsValid() && t.byAddr[m.Addr] == m.MAC {
		delete(t.byAddr, m.Addr)
	}
	m.Addr = addr
	t.byAddr[addr] = m.MAC
}

func (t *Tracker) macOf(addr netip.Addr) string {
	t.mu.Lock()
	mac := t.byAddr[addr]
	t.mu.Unlock()
	if mac != "" {
		return mac
	}
	if t.Neighbor != nil {
		return t.Neighbor(addr)
	}
	return arpLookup(addr)
}

// arpLookup finds addr's MAC in the kernel's ARP table.
func arpLookup(addr netip.Addr) string {
	f, err := os.Open("/proc/net/arp")
	if err != nil {
		return ""
	}
	defer f.Close()
	return parseARP(f, addr)
}

// parseARP reads /proc/net/arp's format:
// "IP address  HW type  Flags  HW address  Mask  Device".
func parseARP(r io.Reader, addr netip.Addr) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || f[0] != addr.String() || f[3] == "00:00:00:00:00:00" {
			continue
		}
		return f[3]
	}
	return ""
}

// dropLog logs refused or dropped requests of one service, at most
// dropBurst a minute (a flood must not flood the console too).
type dropLog struct {
	log  *slog.Logger
	what string // "proxy dhcp: packet dropped"

	mu  sync.Mutex
	lim dropLimiter
}

func (d *dropLog) drop(args ...any) {
	d.mu.Lock()
	ok, suppressed := d.lim.allow(time.Now())
	d.mu.Unlock()
	if suppressed > 0 {
		d.log.Warn(d.what+" (more, not logged)", "count", suppressed)
	}
	if ok {
		d.log.Warn(d.what, args...)
	}
}

// onDone runs stop once ctx ends or the returned release is called, and
// release waits for it: a server's Serve closes its listener with it.
func onDone(ctx context.Context, stop func()) (release func()) {
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Go(func() {
		select {
		case <-ctx.Done():
		case <-done:
		}
		stop()
	})
	return func() { close(done); wg.Wait() }
}

// NeighborMAC is addr's MAC address as the kernel's ARP table has it
// (lowercase, colon-separated), or "" if the table has none: the MAC a
// machine on the segment really sends from, whatever it claims.
func NeighborMAC(addr netip.Addr) string { return arpLookup(addr) }
