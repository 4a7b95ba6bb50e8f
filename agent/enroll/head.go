package enroll

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// stateName is the file, in HeadConfig.Dir, that keeps the machines and
// the decisions.
const stateName = "enroll.json"

// HeadConfig configures a Head.
type HeadConfig struct {
	Mode     Mode
	Identity tls.Certificate // the head's certificate on the enrolment port; required
	// Key returns the cluster key an admitted machine receives; required.
	Key func() clusterkey.Key
	// ClusterID is the cluster's ID an admitted machine is told with the
	// key (it outlives the keys drift rekey replaces); "": the key's own.
	ClusterID string
	// Dir keeps the machines and decisions (enroll.json); "": memory only,
	// forgotten when the agent stops.
	Dir string
	// NodeName is the name a MAC gives a node; required.
	NodeName func(mac net.HardwareAddr) string
	// Neighbor is the MAC the head's ARP table has for an address ("":
	// unknown); a machine whose claimed MAC differs is refused. nil: no check.
	Neighbor func(netip.Addr) string
	// IsMember reports whether a node of that name is in the cluster now:
	// a second machine that claims an admitted MAC while the first is a
	// member is held pending. nil: never.
	IsMember func(node string) bool
	// Event prints a console line (without the "drift: " prefix); nil: none.
	Event  func(format string, args ...any)
	Logger *slog.Logger     // nil: slog.Default()
	Now    func() time.Time // nil: time.Now
}

// Head is the head's side of enrolment: the TLS endpoint machines ask at,
// and the list of machines with the operator's decisions.
type Head struct {
	cfg HeadConfig
	log *slog.Logger

	mu       sync.Mutex
	machines map[string]*api.EnrollMachine // by MAC
	saveErr  error
}

// stateFile is what Dir/enroll.json holds.
type stateFile struct {
	Machines []api.EnrollMachine `json:"machines"`
}

// NewHead returns a Head with the machines kept in cfg.Dir, if any.
func NewHead(cfg HeadConfig) (*Head, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Event == nil {
		cfg.Event = func(string, ...any) {}
	}
	if cfg.Key == nil || cfg.NodeName == nil || len(cfg.Identity.Certificate) == 0 {
		return nil, errors.New("enroll: HeadConfig needs Key, NodeName and Identity")
	}
	h := &Head{cfg: cfg, log: cfg.Logger.With("service", "enroll"), machines: map[string]*api.EnrollMachine{}}
	if cfg.Dir != "" {
		b, err := os.ReadFile(filepath.Join(cfg.Dir, stateName))
		switch {
		case err == nil:
			var st stateFile
			if err := json.Unmarshal(b, &st); err != nil {
				return nil, fmt.Errorf("enroll: read %s: %w (move it away to start with no machines)", filepath.Join(cfg.Dir, stateName), err)
			}
			for _, m := range st.Machines {
				h.machines[m.MAC] = &m
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	return h, nil
}

// Fingerprint is the head certificate's, for the boot script.
func (h *Head) Fingerprint() string { return Fingerprint(h.cfg.Identity) }

// Serve answers machines on l (TLS is added here) until ctx ends.
func (h *Head) Serve(ctx context.Context, l net.Listener) error {
	tl := tls.NewListener(l, &tls.Config{
		Certificates: []tls.Certificate{h.cfg.Identity},
		ClientAuth:   tls.RequireAnyClientCert, // the machine's key pair; known by its public key, not by a CA
		MinVersion:   tls.VersionTLS13,
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+Path, h.ask)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		ErrorLog: slog.NewLogLogger(h.log.Handler(), slog.LevelDebug)}
	done := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			srv.Close()
		case <-done:
		}
	}()
	err := srv.Serve(tl)
	close(done)
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("enroll: serve: %w", err)
}

// ask answers one machine's request.
func (h *Head) ask(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		http.Error(w, "a machine asks with its key pair as TLS client certificate", http.StatusUnauthorized)
		return
	}
	var req Request
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&req); err != nil {
		http.Error(w, "want a JSON enrolment request", http.StatusBadRequest)
		return
	}
	hw, err := net.ParseMAC(req.MAC)
	if err != nil || len(hw) != 6 {
		http.Error(w, "want the MAC address this machine booted with", http.StatusBadRequest)
		return
	}
	mac := hw.String()
	from, _ := netip.ParseAddrPort(r.RemoteAddr)
	addr := from.Addr().Unmap()
	if h.cfg.Neighbor != nil {
		if seen := h.cfg.Neighbor(addr); seen != "" && !strings.EqualFold(seen, mac) {
			h.log.Warn("enroll: refused a machine whose MAC is not the one it sends from", "claimed", mac, "seen", seen, "addr", addr)
			writeJSON(w, Response{State: api.EnrollRefused, Message: fmt.Sprintf("this machine says it is %s but sends from %s: the head refuses it", mac, seen)})
			return
		}
	}
	resp := h.decide(mac, hw, addr, pubKeyID(r.TLS.PeerCertificates[0]))
	writeJSON(w, resp)
}

// decide records the request and answers it.
func (h *Head) decide(mac string, hw net.HardwareAddr, addr netip.Addr, pub string) Response {
	now := h.cfg.Now()
	node := h.cfg.NodeName(hw)
	h.mu.Lock()
	m, known := h.machines[mac]
	if !known {
		m = &api.EnrollMachine{MAC: mac, Node: node, State: api.EnrollPending, First: now}
		h.machines[mac] = m
	}
	newKey := m.PubKey != pub
	prevAddr := m.Addr
	m.Addr, m.Last = addr.String(), now
	if !known {
		if how, ok := h.cfg.Mode.admits(mac); ok {
			m.State, m.How = api.EnrollAdmitted, how
		}
	}
	// A second machine claiming an admitted MAC while the first is a
	// member waits for the operator.
	if known && m.State == api.EnrollAdmitted && newKey && m.PubKey != "" && h.cfg.IsMember != nil && h.cfg.IsMember(node) {
		m.State, m.How = api.EnrollPending, ""
		h.cfg.Event("enroll: WARNING %s (%s) asks from %s with a new key while %s is a member: held pending; `drift admit %s` if it is the same machine rebooted", mac, node, addr, node, node)
	}
	m.PubKey = pub
	st := *m
	h.saveLocked()
	h.mu.Unlock()

	if !known || newKey || prevAddr != st.Addr {
		switch st.State {
		case api.EnrollPending:
			h.cfg.Event("enroll: pending node=%s mac=%s addr=%s: run `drift admit %s` to let it join, `drift reject %s` to refuse it", node, mac, addr, node, node)
		case api.EnrollAdmitted:
			h.cfg.Event("enroll: admitted node=%s mac=%s addr=%s (%s)", node, mac, addr, st.How)
		case api.EnrollRefused:
			h.cfg.Event("enroll: refused node=%s mac=%s addr=%s (%s)", node, mac, addr, st.How)
		}
	}
	switch st.State {
	case api.EnrollAdmitted:
		return Response{State: st.State, Key: h.cfg.Key().Hex(), Cluster: h.cfg.ClusterID, Message: "admitted (" + st.How + ")"}
	case api.EnrollRefused:
		return Response{State: st.State, Message: fmt.Sprintf("the head refused this machine; to let it join, run on the head: drift admit %s", node)}
	}
	return Response{State: st.State, Message: fmt.Sprintf("waiting for the operator; on the head run: drift admit %s (or drift reject %s)", node, node)}
}

// Enrolment is the API's view.
func (h *Head) Enrolment() api.Enrolment {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := api.Enrolment{Mode: h.cfg.Mode.String(), Fingerprint: h.Fingerprint(), Persistent: h.cfg.Dir != "", Machines: h.listLocked()}
	if h.saveErr != nil {
		e.Error = h.saveErr.Error()
	}
	return e
}

// Decide admits or refuses the machines sel names: a node name, a MAC
// address, or "all" (every pending machine).
func (h *Head) Decide(sel string, admit bool) ([]api.EnrollMachine, error) {
	state, how, verb := api.EnrollRefused, "drift reject", "refused"
	if admit {
		state, how, verb = api.EnrollAdmitted, "drift admit", "admitted"
	}
	h.mu.Lock()
	var out []api.EnrollMachine
	for _, m := range h.machines {
		if !selects(sel, m) {
			continue
		}
		m.State, m.How = state, how
		out = append(out, *m)
	}
	if len(out) > 0 {
		h.saveLocked()
	}
	h.mu.Unlock()
	if len(out) == 0 {
		what := "no machine named " + sel + " has asked to join"
		if sel == "all" {
			what = "no machine is pending"
		}
		return nil, fmt.Errorf("%s (drift pending lists them): %w", what, api.ErrNotFound)
	}
	sortMachines(out)
	for _, m := range out {
		h.cfg.Event("enroll: %s node=%s mac=%s (%s)", verb, m.Node, m.MAC, how)
	}
	return out, nil
}

// selects reports whether sel names m: "all" names every pending machine.
func selects(sel string, m *api.EnrollMachine) bool {
	if sel == "all" {
		return m.State == api.EnrollPending
	}
	if hw, err := net.ParseMAC(sel); err == nil {
		return hw.String() == m.MAC
	}
	return sel == m.Node
}

func (h *Head) listLocked() []api.EnrollMachine {
	out := make([]api.EnrollMachine, 0, len(h.machines))
	for _, m := range h.machines {
		out = append(out, *m)
	}
	sortMachines(out)
	return out
}

// sortMachines puts pending machines first, then the most recent.
func sortMachines(ms []api.EnrollMachine) {
	slices.SortFunc(ms, func(a, b api.EnrollMachine) int {
		if (a.State == api.EnrollPending) != (b.State == api.EnrollPending) {
			if a.State == api.EnrollPending {
				return -1
			}
			return 1
		}
		if c := b.Last.Compare(a.Last); c != 0 {
			return c
		}
		return strings.Compare(a.MAC, b.MAC)
	})
}

// saveLocked writes the machines to Dir; an error is kept for the API and
// logged, and the head goes on answering from memory.
func (h *Head) saveLocked() {
	if h.cfg.Dir == "" {
		return
	}
	b, err := json.MarshalIndent(stateFile{Machines: h.listLocked()}, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(h.cfg.Dir, stateName), append(b, '\n'))
	}
	if err != nil && h.saveErr == nil {
		h.log.Error("enroll: keep the decisions", "dir", h.cfg.Dir, "err", err)
	}
	h.saveErr = err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
