package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/files"
	"github.com/driftcluster/drift/agent/membership"
	"github.com/driftcluster/drift/agent/storage"
	"github.com/driftcluster/drift/agent/supervise"
	"github.com/u-root/u-root/pkg/kmodule"
)

// nodeStorage is the node's part of the shared storage: on the head the
// export (unless drift.storage= names an external source), on every node
// the mount at /cluster.
type nodeStorage struct {
	a        *agent
	cl       *cluster
	external string // drift.storage=, as given
	mounter  *storage.Mounter
	backing  atomic.Pointer[api.Backing] // the head's, once mounted
}

// startStorage starts the shared storage services under the supervisor:
// the head exports its backing store to the cluster's members, and every
// node mounts the head's export (or drift.storage=) at /cluster once it
// knows where it is. It returns the storage API routes (GET /v1/storage,
// GET /v1/storage/local) and the files routes of drift cp, served from
// this node's /cluster while it is mounted: add them to the API server's
// Routes.
func (a *agent) startStorage(ctx context.Context, cl *cluster) map[string]http.Handler {
	s := &nodeStorage{a: a, cl: cl, external: a.node.Options.Storage}
	s.start(ctx)
	a.jobs.WaitShared = s.waitMounted
	a.obs.storage = s.status
	a.shared = s.mounted
	routes := api.StorageRoutes(cl, a.keys, s.status)
	fsrv := &files.Server{Root: storage.MountPoint, Node: a.node.Name, Ready: s.mounted, Logger: a.log}
	api.AddRoutes(routes, fsrv.Routes())
	return routes
}

// mounted reports whether /cluster is mounted and passed its last health
// check, for the files endpoints.
func (s *nodeStorage) mounted() error {
	if s.mounter == nil {
		return errors.New("drift.storage= is not a source drift can mount")
	}
	st := s.mounter.Status()
	switch {
	case !st.Mounted && st.Error != "":
		return errors.New(st.Error)
	case !st.Mounted:
		return errors.New("not mounted yet")
	case !st.Healthy:
		return fmt.Errorf("mounted from %s but not answering: %s", st.Source, st.Error)
	}
	return nil
}

func (s *nodeStorage) start(ctx context.Context) {
	a := s.a
	resolve := s.headSource
	if s.external != "" {
		src, err := storage.ParseSource(s.external)
		if err != nil {
			a.con.Event("storage: error drift.storage=%s: %v; /cluster is not mounted", s.external, err)
			return
		}
		resolve = func() (storage.Source, error) { return src, nil }
	} else if a.node.Role == boot.RoleHead {
		a.sup.Start(ctx, supervise.Service{Name: "storage-server", Run: s.serve})
	}
	s.mounter = &storage.Mounter{
		Resolve: resolve,
		Logger:  a.log,
		Mount: func(src storage.Source, target string) error {
			loadClientModules(a, src.Kind)
			return storage.MountSource(src, target)
		},
		Guard: storage.GuardMountPoint,
		OnMount: func(src storage.Source) {
			a.con.Event("storage mounted=%s from=%s", storage.MountPoint, src)
			a.node.phases.Mark(boot.PhaseStorage)
		},
	}
	a.sup.Start(ctx, supervise.Service{Name: "storage-mount", Run: s.mounter.Run})
}

// waitMounted waits until /cluster is mounted, while the node is young
// (a node that has been up a while and has no storage will not get it
// in the next few seconds either), and reports whether it is.
func (s *nodeStorage) waitMounted(ctx context.Context) bool {
	if s.mounter == nil {
		return false
	}
	deadline := s.a.started.Add(2 * time.Minute)
	for {
		if s.mounter.Status().Mounted {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// serve prepares the head's backing store and exports it until ctx ends.
func (s *nodeStorage) serve(ctx context.Context) error {
	a := s.a
	// The disks' drivers and the file systems load in the background:
	// the DRIFT-DATA partition cannot show before they are in.
	select {
	case <-a.node.ModulesDone:
	case <-ctx.Done():
		return nil
	}
	b, err := storage.PrepareBacking(ctx, storage.BackingConfig{Logger: a.log, LoadModule: loadFSModule})
	if err != nil {
		return err
	}
	if s.backing.Swap(&b) == nil {
		if b.Persistent {
			a.con.Event("storage: exporting %s (%s on %s, label %s) on port %d", b.Dir, b.FSType, b.Device, b.Label, storage.DefaultPort)
		} else {
			why := "no " + storage.DataLabel + " partition"
			if b.Error != "" {
				why = b.Error
			}
			a.con.Event("storage: WARNING %s: the shared storage is a tmpfs in memory and its data is lost at power-off; exporting on port %d", why, storage.DefaultPort)
		}
	}
	srv := &storage.Server{Dir: b.Dir, Logger: a.log, Allow: s.isMember}
	return a.obs.serveStorage(ctx, srv)
}

// loadFSModule loads a kernel module, such as a file system type's (ext4,
// xfs, vfat), with its dependencies; built-in or loaded already is fine.
func loadFSModule(fstype string) error {
	p, err := kmodule.NewProber(kmodule.ProbeOpts{})
	if err != nil {
		return fmt.Errorf("load %s: %w", fstype, err)
	}
	return p.Probe(fstype, "")
}

// clientModules are the kernel modules a mount of each kind needs that the
// kernel would otherwise ask modprobe for, which a drift node does not
// have: the 9P TCP transport is its own module since Linux 6.0, and the
// NFS client loads its version modules on demand.
var clientModules = map[storage.Kind][]string{
	storage.Kind9P:  {"9p", "9pnet_fd"},
	storage.KindNFS: {"nfs", "nfsv4", "nfsv3"},
}

// loadClientModules loads what a mount of kind needs; a module that is
// missing is logged, and the mount's own error then says what failed.
func loadClientModules(a *agent, kind storage.Kind) {
	for _, m := range clientModules[kind] {
		if err := loadFSModule(m); err != nil {
			a.log.Warn("load kernel module for shared storage", "module", m, "err", err)
		}
	}
}

// isMember reports whether addr is the address of a member that is not
// known to be dead (a suspect member may just be slow to answer).
func (s *nodeStorage) isMember(addr netip.Addr) bool {
	return slices.ContainsFunc(s.cl.Members(), func(m membership.Member) bool {
		return m.State != membership.StateDead && m.Addr == addr.String()
	})
}

// headSource is the head's export, as membership knows the head; on the
// head itself, its own export's directory, bound.
func (s *nodeStorage) headSource() (storage.Source, error) {
	for _, m := range s.cl.Members() {
		if m.Info.Role != string(boot.RoleHead) || m.State != membership.StateAlive {
			continue
		}
		if m.Name == s.a.node.Name { // this head: its export, bound
			b := s.backing.Load()
			if b == nil {
				return storage.Source{}, fmt.Errorf("this head's export is not ready yet: %w", storage.ErrNoServer)
			}
			return storage.Source{Kind: storage.KindLocal, Dir: b.Dir}, nil
		}
		addr, err := netip.ParseAddr(m.Addr)
		if err != nil {
			continue
		}
		return storage.Source{Kind: storage.Kind9P, Host: addr, Port: storage.DefaultPort}, nil
	}
	return storage.Source{}, fmt.Errorf("no alive head in the member list: %w", storage.ErrNoServer)
}

// status is this node's storage, for the API.
func (s *nodeStorage) status() api.StorageStatus {
	st := api.StorageStatus{External: s.external}
	if s.mounter != nil {
		st.Mount = s.mounter.Status()
	} else {
		st.Mount = api.MountStatus{Target: storage.MountPoint, Error: "drift.storage= is not a source drift can mount"}
	}
	if b := s.backing.Load(); b != nil {
		e := &api.StorageExport{Backing: *b, Port: storage.DefaultPort}
		if sp, err := storage.SpaceOf(b.Dir); err == nil {
			e.Total, e.Free = sp.Total, sp.Free
		}
		st.Export = e
	}
	return st
}
