// Package daemon is driftd: the node agent that drift-init, the node's
// PID 1, starts. It brings the node up (the image's Debian packages, modules, host
// name, network), prints the ready line, and then supervises the node's
// services (membership, discovery, the API, the head's DHCP server) for as
// long as the machine runs.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/console"
	"github.com/driftcluster/drift/agent/jobs"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/agent/logring"
	"github.com/driftcluster/drift/agent/supervise"
	"github.com/driftcluster/drift/agent/version"
	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"
)

// KeyFile is where an image keeps its cluster key.
const KeyFile = "/etc/drift/cluster.key"

// Config is what the agent needs from its surroundings.
type Config struct {
	Logger          *slog.Logger     // nil: slog.Default()
	Console         *console.Console // required: where "drift: " events go
	Log             *logring.Ring    // the log `drift logs` serves (Logger's and Console's lines); nil: none
	AlwaysModules   []string         // loaded at boot whatever the hardware
	PackagesModules []string         // loaded first when the image carries Debian packages
}

// Node is the state the agent learns while it boots.
type Node struct {
	Name    string
	Role    boot.Role
	Options boot.Options
	NICs    []boot.NIC

	// ModulesDone is closed once the modules loaded in the background
	// (always.list, the drivers of devices the network does not need)
	// are loaded.
	ModulesDone <-chan struct{}
	phases      *boot.PhaseLog
	loader      niceThread // the thread loading them: niced until ready
}

// niceThread is a thread that runs at the lowest priority until the node
// is ready.
type niceThread struct {
	mu    sync.Mutex
	tid   int  // 0: none running
	ready bool // the node is ready: no more niceness
}

// start lowers the calling thread's priority, unless the node is ready;
// the caller has locked its goroutine to the thread and calls stop
// before it ends.
func (t *niceThread) start(log *slog.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ready {
		return
	}
	t.tid = unix.Gettid()
	if err := unix.Setpriority(unix.PRIO_PROCESS, t.tid, 19); err != nil {
		log.Warn("load modules at low priority", "err", err)
	}
}

func (t *niceThread) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.tid = 0
}

// normal gives the thread its normal priority back, for good: a job that
// keeps the CPU busy must not hold back the modules CRIU needs to move it.
func (t *niceThread) normal(log *slog.Logger) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.ready = true
	if t.tid != 0 {
		if err := unix.Setpriority(unix.PRIO_PROCESS, t.tid, 0); err != nil {
			log.Warn("load modules at normal priority", "err", err)
		}
	}
}

// OnNode reports whether this is a node booted from a drift image.
func OnNode() bool {
	_, err := os.Stat(KeyFile)
	_, verr := os.Stat(VersionFile) // a network-booted machine enrols for its key
	return err == nil || verr == nil
}

// ErrNotANode reports that driftd was started outside a drift image.
var ErrNotANode = errors.New("driftd runs only on a node booted from a drift image (neither " + KeyFile + " nor " + VersionFile + " found); to try drift, boot the image: `make demo`")

// agent is one running driftd.
type agent struct {
	log     *slog.Logger
	con     *console.Console
	node    *Node
	keys    *clusterkey.Ring // the cluster's ID and keys; drift rekey changes them (rekey.go)
	clients peerClients      // API clients of peers, kept for their connections (jobs.go)
	sup     *supervise.Supervisor
	jobs    *jobs.Manager
	bal     *balancer
	obs     *observer
	// shared says whether /cluster is mounted and answered its last
	// health check (nil: it is not); set by startStorage.
	shared func() error

	rekey     *rekeyService  // drift rekey and drift remove (rekey.go)
	enroll    *enrollService // head: machines that network-boot enrol here (enroll.go); nil on a worker
	enrollNet *network

	started time.Time // when driftd started
}

// Run brings the node up and serves until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	if !OnNode() {
		return ErrNotANode
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	a := &agent{log: log, con: cfg.Console, sup: &supervise.Supervisor{Logger: log}, started: time.Now()}
	phases := &boot.PhaseLog{Event: cfg.Console.Event}
	phases.Mark(boot.PhaseAgent)
	mountPackages(cfg, log) // first: before anything runs from the directories it covers
	node, err := bootWithPhases(ctx, cfg, log, phases)
	if err != nil {
		return err
	}
	a.node = node
	creds, err := loadKey(node.Options)
	enrol := err != nil && keyMissing(err, node.Options) // network-booted: the head gives the key (enroll.go)
	if err != nil && !enrol {
		return err
	}

	if node.Options.Lab { // drift-lab's exec port: never on a real machine
		a.sup.Start(ctx, supervise.Service{Name: "labport", Run: func(ctx context.Context) error {
			err := (&labport.Server{Logger: log}).Run(ctx)
			if errors.Is(err, labport.ErrNotFound) {
				return supervise.Done(err)
			}
			return err
		}})
	}
	net := a.startNetwork(ctx, node.NICs)
	if net.primary().IsValid() {
		phases.Mark(boot.PhaseAddress)
	}
	if enrol {
		if creds, err = a.enrol(ctx); err != nil {
			return err
		}
	}
	a.keys = clusterkey.NewRing(creds)
	log.Info("cluster", "id", creds.ID, "key", creds.Key.ID())
	cl := &cluster{a: a, net: net}
	a.enrollNet = net
	a.bal = newBalancer(a, cl)
	a.jobs = &jobs.Manager{Self: node.Name, Peers: &peers{a: a, cl: cl}, Logger: log, Place: a.bal.place, Accepting: a.bal.accepting, OnLoad: a.bal.loadChanged, KillOrphans: true}
	if node.Options.Lab { // a test holds a move at a named point by a file there
		a.jobs.Failpoints = "/run/drift/failpoints"
	}
	a.obs = a.newObserver(cl)        // events and metrics (observe.go)
	rekeyRoutes := a.rekeyRoutes(cl) // drift rekey, drift remove (rekey.go); before the services that use a.rekey
	a.sup.Start(ctx, supervise.Service{Name: "jobs", Run: a.jobs.Run})
	a.sup.Start(ctx, supervise.Service{Name: "cluster", Run: cl.Run})
	a.sup.Start(ctx, supervise.Service{Name: "balancer", Run: a.bal.Run})
	go func() { // the power button's driver may be among the modules loaded in the background
		select {
		case <-node.ModulesDone:
		case <-ctx.Done():
			return
		}
		a.startPower(ctx) // the power button drains, then powers off (power.go)
	}()
	routes := a.jobs.Routes()
	a.bal.routes(routes)
	api.AddRoutes(routes, a.startEnroll(ctx, cl))       // head: machines that network-boot ask for the key (enroll.go)
	api.AddRoutes(routes, a.startNetboot(ctx, net, cl)) // head: DHCP boot options, TFTP, HTTP (netboot.go)
	api.AddRoutes(routes, a.startStorage(ctx, cl))
	api.AddRoutes(routes, a.startArrays(ctx, cl)) // drift run --array (arrays.go)
	api.AddRoutes(routes, rekeyRoutes)
	api.AddRoutes(routes, a.obs.start(ctx))
	api.AddRoutes(routes, a.profileRoutes(&peers{a: a, cl: cl})) // drift profile (profile.go)
	if cfg.Log != nil {
		api.AddRoutes(routes, (&logring.Server{Ring: cfg.Log, Self: node.Name, Client: (&peers{a: a, cl: cl}).Client}).Routes())
	} // head: the 9P export; every node: /cluster (storage.go)
	a.sup.Start(ctx, supervise.Service{Name: "api", Run: (&api.Server{
		Cluster: cl, Keys: a.keys, Logger: log, Routes: routes,
	}).Run})
	a.con.Event("ready node=%s addr=%s role=%s version=%s", node.Name, addrString(net.primary()), node.Role, version.Get())
	phases.Mark(boot.PhaseReady)
	node.loader.normal(log)
	go func() { // after ready: boot does not wait for it; CRIU needs the modules loaded in the background
		select {
		case <-node.ModulesDone:
		case <-ctx.Done():
			return
		}
		a.jobs.Prepare(ctx)
	}()
	a.sup.Wait()
	return ctx.Err()
}

// loadKey returns the cluster key and ID: drift.key on the command line,
// else the image's (or, after a rekey, the one the node keeps).
func loadKey(o boot.Options) (clusterkey.Cluster, error) {
	if o.KeyHex != "" {
		k, err := clusterkey.Parse([]byte(o.KeyHex))
		if err != nil {
			return clusterkey.Cluster{}, err
		}
		// A rekey since boot left the cluster's newer key in KeyFile:
		// an agent started again uses it, not the command line's.
		if kept, err := clusterkey.LoadCluster(KeyFile); err == nil && kept.ID == k.ID() {
			return kept, nil
		}
		return clusterkey.Of(k), nil
	}
	k, err := clusterkey.LoadCluster(KeyFile)
	if err != nil {
		return k, fmt.Errorf("load the cluster key: %w (a machine booted from the drift ISO or USB stick has it; one booted from the network asks a drift head for it, which its boot script must name with drift.enroll_head and drift.enroll_fp)", err)
	}
	return k, nil
}

// Boot reads the command line, loads modules and names the host.
func Boot(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	return bootWithPhases(ctx, cfg, log, nil)
}

// bootWithPhases is Boot, logging its phases to phases (nil: none). It
// loads the network's drivers first and returns once the NICs exist; the
// other modules load in the background and node.ModulesDone says when.
func bootWithPhases(ctx context.Context, cfg Config, log *slog.Logger, phases *boot.PhaseLog) (*Node, error) {
	node := &Node{Role: boot.RoleWorker, phases: phases}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	opts, err := boot.ParseCmdline(string(cmdline))
	if err != nil {
		// A typo on the command line must not cost the node its boot.
		cfg.Console.Event("error %v; continuing as a worker with defaults", err)
		opts = boot.Options{Role: boot.RoleWorker}
	}
	node.Role, node.Options = opts.Role, opts
	for _, u := range opts.Unknown {
		log.Warn("unknown kernel command line option", "option", u)
	}

	// CRIU restores a job's reserved but unused address space (Go
	// programs reserve hundreds of MB) as writable mappings; with the
	// kernel's heuristic overcommit a small node refuses them.
	if err := os.WriteFile("/proc/sys/vm/overcommit_memory", []byte("1"), 0o644); err != nil {
		log.Warn("allow memory overcommit (needed to restore migrated jobs)", "err", err)
	}
	start := time.Now()
	loaded, err := loadModules(ctx, nil, boot.EarlyBuses, boot.EarlyDevice, log)
	if err != nil {
		cfg.Console.Event("error loading modules: %v", err)
	}
	log.Info("network modules loaded", "count", len(loaded), "modules", strings.Join(loaded, " "), "took", time.Since(start).Round(time.Millisecond))
	phases.Mark(boot.PhaseModules)
	done := make(chan struct{})
	node.ModulesDone = done
	go func() { // the rest: CRIU's, file systems, disks, USB... nothing before ready needs them
		defer close(done)
		// At the lowest priority: on a one-CPU machine the work of
		// loading them must not hold back DHCP, membership and ready.
		// The thread stays locked, and so niced, until it exits.
		runtime.LockOSThread()
		node.loader.start(log)
		defer node.loader.stop()
		start := time.Now()
		// First the files the image keeps packed until now (criu, the
		// modules not for the network): the modules below are among them.
		if n, err := boot.UnpackLate("/"+boot.LatePath, "/"); err != nil {
			cfg.Console.Event("error %v", err)
		} else if n > 0 {
			log.Info("late files unpacked", "count", n, "took", time.Since(start).Round(time.Millisecond))
		}
		loaded, err := loadModules(ctx, cfg.AlwaysModules, nil, nil, log)
		if err != nil {
			cfg.Console.Event("error loading modules: %v", err)
		}
		log.Info("modules loaded", "count", len(loaded), "modules", strings.Join(loaded, " "), "took", time.Since(start).Round(time.Millisecond))
		phases.Mark(boot.PhaseAllModules)
	}()

	node.NICs = waitNICs(ctx, log)
	phases.Mark(boot.PhaseNIC)
	if len(node.NICs) > 0 {
		node.Name = boot.NodeName(node.NICs[0].MAC)
	} else {
		node.Name = boot.RandomNodeName()
		log.Warn("no network interface found; naming the node at random", "name", node.Name)
	}
	if err := unix.Sethostname([]byte(node.Name)); err != nil {
		return nil, fmt.Errorf("set host name %s: %w", node.Name, err)
	}
	os.WriteFile("/etc/hostname", []byte(node.Name+"\n"), 0o644)
	return node, nil
}

// loadModules loads always, then the modules of the devices present (on
// buses; nil: all) that devices accepts (nil: every device).
func loadModules(ctx context.Context, always, buses []string, devices func(string) bool, log *slog.Logger) ([]string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return nil, fmt.Errorf("uname: %w", err)
	}
	dir := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	f, err := os.Open(filepath.Join(dir, "modules.alias"))
	if err != nil {
		return nil, fmt.Errorf("open module aliases: %w (the image has no modules for kernel %s)", err, filepath.Base(dir))
	}
	aliases, err := boot.ParseAliases(f)
	f.Close()
	if err != nil {
		return nil, err
	}
	load, err := moduleLoader()
	if err != nil {
		return nil, err
	}
	cp := &boot.Coldplug{
		Aliases: aliases,
		Always:  always,
		Devices: devices,
		Buses:   buses,
		Logger:  log,
		Load:    load,
	}
	return cp.Run(ctx)
}

// moduleLoader returns a function that loads a kernel module, with its
// dependencies, from the image's /lib/modules.
func moduleLoader() (func(name string) error, error) {
	prober, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return nil, fmt.Errorf("read module dependencies: %w", err)
	}
	return func(name string) error { return prober.Probe(name, "") }, nil
}

// waitNICs lists the physical NICs, waiting briefly for drivers that
// register their interface after probing.
func waitNICs(ctx context.Context, log *slog.Logger) []boot.NIC {
	deadline := time.Now().Add(3 * time.Second)
	for {
		nics, err := boot.PhysicalNICs("/sys")
		if err == nil && len(nics) > 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return nics
		}
		time.Sleep(100 * time.Millisecond)
	}
}
