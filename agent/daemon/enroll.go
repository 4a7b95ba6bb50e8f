package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/enroll"
	"github.com/driftcluster/drift/agent/membership"
	"github.com/driftcluster/drift/agent/netboot"
	"github.com/driftcluster/drift/agent/storage"
	"github.com/driftcluster/drift/agent/supervise"
	"github.com/driftcluster/drift/agent/version"
)

// VersionFile marks a drift image; unlike KeyFile, a network-booted
// machine has it before it has enrolled.
const VersionFile = "/etc/drift/version"

// enrollDir is where the head keeps its enrolment certificate and its
// decisions, on its DRIFT-DATA partition.
var enrollDir = filepath.Join(storage.DataDir, ".drift", "enroll")

// dataWait bounds how long the head waits for its backing store before
// it enrols machines from memory.
const dataWait = 20 * time.Second

// enrollService is the head's enrolment (agent/enroll): started before
// network boot, which waits for its fingerprint to put in boot.ipxe.
type enrollService struct {
	a     *agent
	cl    *cluster
	head  atomic.Pointer[enroll.Head]
	dir   string        // where decisions and the key are kept on DRIFT-DATA; "": memory only. Set before ready closes
	ready chan struct{} // closed once head is set
}

// startEnroll starts the head's enrolment under the supervisor and returns
// its API routes; on a worker the routes say that only a head enrols.
func (a *agent) startEnroll(ctx context.Context, cl *cluster) map[string]http.Handler {
	if a.node.Role != boot.RoleHead {
		return api.EnrollRoutes(nil)
	}
	s := &enrollService{a: a, cl: cl, ready: make(chan struct{})}
	a.enroll = s
	a.sup.Start(ctx, supervise.Service{Name: "enroll", Run: s.Run})
	return api.EnrollRoutes(s)
}

// Run sets the head up once (certificate, kept decisions), then serves
// the enrolment port until ctx ends.
func (s *enrollService) Run(ctx context.Context) error {
	a := s.a
	h := s.head.Load()
	if h == nil {
		var err error
		if h, err = s.setup(ctx); err != nil {
			a.con.Event("enroll: not serving: %v", err)
			return supervise.Done(err)
		}
		s.head.Store(h)
		close(s.ready)
	}
	l, err := net.Listen("tcp4", fmt.Sprintf(":%d", enroll.Port))
	if err != nil {
		return fmt.Errorf("enroll: listen: %w", err)
	}
	return h.Serve(ctx, l)
}

func (s *enrollService) setup(ctx context.Context) (*enroll.Head, error) {
	a := s.a
	mode, err := enroll.ParseMode(a.node.Options.Enroll)
	if err != nil {
		return nil, err
	}
	dir, kept := "", "memory only (no DRIFT-DATA partition): pending machines and decisions are forgotten at reboot"
	if persistentData(ctx) {
		if err := os.MkdirAll(enrollDir, 0o700); err == nil {
			dir, kept = enrollDir, "kept on DRIFT-DATA"
		} else {
			a.log.Warn("enroll: keep decisions on DRIFT-DATA", "err", err)
		}
	}
	id, err := enroll.NewIdentity(a.node.Name)
	if dir != "" {
		id, err = enroll.LoadOrCreateIdentity(dir, a.node.Name)
	}
	if err != nil {
		return nil, err
	}
	if dir != "" {
		s.dir = dir
		a.adoptKeptKey(ctx, dir) // a head booted again from a medium older than the last rekey
	}
	h, err := enroll.NewHead(enroll.HeadConfig{
		Mode: mode, Identity: id, Dir: dir, Logger: a.log,
		Key:       a.keys.Current,
		ClusterID: a.keys.ClusterID(),
		NodeName:  boot.NodeName,
		Neighbor:  netboot.NeighborMAC,
		IsMember: func(node string) bool {
			for _, m := range s.cl.Members() {
				if m.Name == node && m.State != membership.StateDead {
					return true
				}
			}
			return false
		},
		Event: func(f string, args ...any) { a.con.Event(f, args...) },
	})
	if err != nil {
		return nil, err
	}
	a.con.Event("enroll: serving mode=%s port=%d fingerprint=%s (%s)", mode, enroll.Port, h.Fingerprint(), kept)
	if mode.Auto {
		a.con.Event("enroll: WARNING drift.enroll=auto: every machine that network-boots from this head is given the cluster key, which is root on every node: use it only on a LAN where you trust every machine")
	}
	return h, nil
}

// fingerprint waits for the head's enrolment to be set up and returns its
// certificate's fingerprint; "" if it is not a head or ctx ends first.
func (a *agent) enrollFingerprint(ctx context.Context) string {
	s := a.enroll
	if s == nil {
		return ""
	}
	select {
	case <-s.ready:
		return s.head.Load().Fingerprint()
	case <-ctx.Done():
		return ""
	}
}

// Enrolment serves the API.
func (s *enrollService) Enrolment() api.Enrolment {
	h := s.head.Load()
	if h == nil {
		return api.Enrolment{Mode: s.a.node.Options.Enroll, Error: "starting: waiting for the head's storage", Machines: []api.EnrollMachine{}}
	}
	e := h.Enrolment()
	if addr := s.a.enrollAddr(); addr != "" {
		e.Addr = addr
	}
	return e
}

// Decide serves the API.
func (s *enrollService) Decide(sel string, admit bool) ([]api.EnrollMachine, error) {
	h := s.head.Load()
	if h == nil {
		return nil, errors.New("enrolment is starting; try again in a moment")
	}
	return h.Decide(sel, admit)
}

func (a *agent) enrollAddr() string {
	if a.enrollNet == nil {
		return ""
	}
	if p := a.enrollNet.primary(); p.IsValid() {
		return netip.AddrPortFrom(p, enroll.Port).String()
	}
	return ""
}

// persistentData waits (up to dataWait) for the head's backing store to
// be mounted and reports whether it is a partition rather than a tmpfs.
func persistentData(ctx context.Context) bool {
	deadline := time.Now().Add(dataWait)
	for {
		if fstype, ok := mountedFS(storage.DataDir); ok {
			return fstype != "tmpfs"
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// mountedFS is the file system type mounted at dir, from mountinfo.
func mountedFS(dir string) (string, bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fs, pf := strings.Fields(pre), strings.Fields(post)
		if ok && len(fs) >= 5 && fs[4] == dir && len(pf) >= 1 {
			return pf[0], true
		}
	}
	return "", false
}

// keyMissing reports whether err is loadKey's for a machine that booted
// without a key and may enrol for one.
func keyMissing(err error, o boot.Options) bool {
	return errors.Is(err, fs.ErrNotExist) && o.EnrollHead != "" && o.EnrollFP != ""
}

// enrol asks the head named on the command line for the cluster key
// until it is admitted, saying on the console what the operator should
// do, and keeps the key in KeyFile (an agent restart does not ask again).
func (a *agent) enrol(ctx context.Context) (clusterkey.Cluster, error) {
	o := a.node.Options
	mac := ""
	if len(a.node.NICs) > 0 {
		mac = a.node.NICs[0].MAC.String()
	}
	head := strings.Split(o.EnrollHead, ":")[0]
	a.con.Event("enroll: asking the head at %s for the cluster key as %s (%s)", o.EnrollHead, a.node.Name, mac)
	c, err := enroll.AskCluster(ctx, enroll.AskConfig{
		Head: o.EnrollHead, Fingerprint: o.EnrollFP, MAC: mac, Node: a.node.Name, Version: version.Get(), Logger: a.log,
		OnState: func(state, msg string) {
			switch state {
			case api.EnrollAdmitted:
				a.con.Event("enroll: admitted by the head at %s: %s", head, msg)
			default:
				a.con.Event("enroll: %s: %s", state, msg)
			}
		},
	})
	if err != nil {
		return c, fmt.Errorf("enrol with the head at %s: %w", o.EnrollHead, err)
	}
	if err := clusterkey.WriteCluster(KeyFile, c); err != nil {
		a.log.Warn("keep the cluster key", "err", err)
	}
	return c, nil
}
