package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/enroll"
	"github.com/driftcluster/drift/agent/membership"
	"github.com/driftcluster/drift/agent/netboot"
	"github.com/driftcluster/drift/agent/supervise"
	"github.com/driftcluster/drift/agent/version"
	"github.com/u-root/u-root/pkg/kmodule"
)

// Where the head keeps its boot medium and how long it looks for it (a
// CD drive or USB stick can show up a few seconds after its driver).
const (
	mediumMount = "/run/drift/medium"
	mediumWait  = 20 * time.Second
)

// netbootService is the head's network boot: DHCP boot options (in the
// head's DHCP server, or as proxyDHCP when another server numbers the
// LAN), TFTP for the iPXE binaries and HTTP for the iPXE script, the
// kernel and the initramfs, read from the head's own boot medium.
type netbootService struct {
	a       *agent
	net     *network
	cl      *cluster
	tracker *netboot.Tracker

	mu     sync.Mutex
	status api.Netboot
}

// startNetboot starts the head's network boot under the supervisor and
// returns its API routes (GET /v1/netboot); on a worker the routes say
// that only a head serves it. Add them to the API server's Routes.
func (a *agent) startNetboot(ctx context.Context, n *network, cl *cluster) map[string]http.Handler {
	if a.node.Role != boot.RoleHead {
		return api.NetbootRoutes(nil)
	}
	s := &netbootService{a: a, net: n, cl: cl, tracker: a.obs.netbootTracker()}
	a.sup.Start(ctx, supervise.Service{Name: "netboot", Run: s.Run})
	return api.NetbootRoutes(s.Netboot)
}

// Run finds the boot medium and serves until ctx ends.
func (s *netbootService) Run(ctx context.Context) error {
	a := s.a
	iface := s.net.dhcpIf
	if iface == "" && len(a.node.NICs) > 0 {
		iface = a.node.NICs[0].Name
	}
	mode := "proxy"
	switch {
	case a.node.Options.DHCP == "off":
		mode = "off"
	case s.net.dhcp != nil && s.net.dhcp.ServerAddr().IsValid():
		mode = "server"
	}
	s.set(func(st *api.Netboot) { st.Mode, st.Interface = mode, iface })
	if iface == "" {
		return s.fail(errors.New("no network interface"))
	}

	// The kernel mounts ISO 9660 only with isofs; the CD drivers come
	// with coldplug, but load them here too in case. Their files are
	// among those the image unpacks late (daemon.go): wait for them.
	if done := a.node.ModulesDone; done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if p, err := kmodule.NewProber(kmodule.ProbeOpts{}); err == nil {
		for _, m := range []string{"isofs", "cdrom", "sr_mod"} {
			if err := p.Probe(m, ""); err != nil {
				a.log.Debug("netboot: load module", "module", m, "err", err)
			}
		}
	}
	med, err := s.findMedium(ctx)
	if err != nil {
		return s.fail(err)
	}
	if med.Version != "" && med.Version != version.Get() {
		a.con.Event("netboot: warning: boot medium %s holds drift %s, this head runs %s: workers boot the medium's", med.Device, med.Version, version.Get())
	}
	tftpDir, terr := netboot.PXEDir(filepath.Join(med.Dir, "pxe"), netboot.ImagePXEDir)
	if terr != nil {
		a.con.Event("netboot: warning: %v", terr)
	}
	cmdline, _ := os.ReadFile("/proc/cmdline")
	pxe := &netboot.PXE{Tracker: s.tracker}
	fp := a.enrollFingerprint(ctx) // boot.ipxe names the enrolment certificate (enroll.go)
	if fp == "" {
		return s.fail(errors.New("enrolment is not serving: machines booted from the network could not get the cluster key"))
	}
	services := []supervise.Service{{Name: "netboot-http", Run: netboot.NewHTTPServer(netboot.HTTPConfig{
		Logger: a.log, Dir: med.BootDir, Kernel: med.Kernel, Initramfs: med.Initramfs,
		Cmdline: netboot.WorkerCmdline(string(cmdline)), JoinPort: membership.DefaultPort, Tracker: s.tracker,
		EnrollPort: enroll.Port, EnrollFingerprint: fp,
	}).Run}}
	if tftpDir != "" {
		services = append(services, supervise.Service{Name: "tftp", Run: netboot.NewTFTPServer(netboot.TFTPConfig{
			Logger: a.log, Dir: tftpDir, Tracker: s.tracker}).Run})
	}
	// iPXE boots only once its IPv6 configuration ends (ra.go).
	services = append(services, supervise.Service{Name: "netboot-ra", Run: netboot.NewRAResponder(netboot.RAConfig{Logger: a.log, Interface: iface, PXE: pxe}).Run})
	switch mode {
	case "server":
		s.net.dhcp.SetPXE(pxe)
		defer s.net.dhcp.SetPXE(nil)
	case "proxy":
		services = append(services, supervise.Service{Name: "proxy-dhcp", Run: netboot.NewProxyDHCP(netboot.ProxyConfig{
			Logger: a.log, Interface: iface, PXE: pxe}).Run})
	}
	addr := s.net.primary()
	s.set(func(st *api.Netboot) {
		st.Addr, st.Medium, st.Version, st.TFTPDir = addrString(addr), med.Device, med.Version, tftpDir
		st.ScriptURL = "http://" + addrString(addr) + "/" + netboot.FileScript
		st.Error = ""
	})
	a.con.Event("netboot: serving dhcp=%s iface=%s addr=%s medium=%s tftp=%s", mode, iface, addrString(addr), med.Device, orNone(tftpDir))

	// The services share this run: one failing stops the others, and the
	// supervisor starts netboot again.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make(chan error, len(services))
	var wg sync.WaitGroup
	for _, svc := range services {
		wg.Go(func() {
			err := svc.Run(ctx)
			if err != nil {
				err = fmt.Errorf("%s: %w", svc.Name, err)
			}
			errs <- err
			cancel()
		})
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// findMedium looks for the boot medium until mediumWait has passed.
func (s *netbootService) findMedium(ctx context.Context) (*netboot.Medium, error) {
	deadline := time.Now().Add(mediumWait)
	for {
		m, err := netboot.FindMedium(netboot.MediumConfig{MountDir: mediumMount})
		if err == nil || time.Now().After(deadline) {
			return m, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// fail reports why the head does not network-boot others and ends the
// service: without a medium there is nothing to serve.
func (s *netbootService) fail(err error) error {
	err = fmt.Errorf("netboot: %w", err)
	s.set(func(st *api.Netboot) { st.Error = err.Error() })
	s.a.con.Event("netboot: not serving: %v", err)
	return supervise.Done(err)
}

func (s *netbootService) set(f func(*api.Netboot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status)
}

// Netboot is the API's view: the service and the machines, each marked
// joined once a member carries the name its MAC gives it.
func (s *netbootService) Netboot() api.Netboot {
	s.mu.Lock()
	st := s.status
	s.mu.Unlock()
	st.TFTPBytes, st.HTTPBytes = s.tracker.Bytes()
	members := map[string]membership.Member{}
	for _, m := range s.cl.Members() {
		if m.State != membership.StateDead {
			members[m.Name] = m
		}
	}
	st.Machines = []api.NetbootMachine{}
	for _, m := range s.tracker.Machines() {
		nm := api.NetbootMachine{MAC: m.MAC, Arch: m.Arch, Stage: string(m.Stage), At: m.At}
		if m.Addr.IsValid() {
			nm.Addr = m.Addr.String()
		}
		if hw, err := net.ParseMAC(m.MAC); err == nil {
			nm.Node = boot.NodeName(hw)
		}
		if mb, ok := members[nm.Node]; ok {
			nm.Stage = string(netboot.StageJoined)
			if mb.Since.After(nm.At) {
				nm.At = mb.Since
			}
			if a, err := netip.ParseAddr(mb.Addr); err == nil && nm.Addr == "" {
				nm.Addr = a.String()
			}
		}
		st.Machines = append(st.Machines, nm)
	}
	return st
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
