package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
)

func (m *Manager) migrateRoutes(routes map[string]http.Handler) {
	routes["POST /v1/jobs/{id}/migrate"] = http.HandlerFunc(m.handleMigrate)
	routes["GET /v1/jobs/{id}/why"] = http.HandlerFunc(m.handleWhy)
	routes["POST /v1/jobs/{id}/cpucheck"] = http.HandlerFunc(m.handleCPUCheck)
	routes["PUT /v1/jobs/{id}/images/{name}"] = http.HandlerFunc(m.handleImages)
	routes["POST /v1/jobs/{id}/restore"] = http.HandlerFunc(m.handleRestore)
	routes["POST /v1/jobs/{id}/discard"] = http.HandlerFunc(m.handleDiscard)
}

func (m *Manager) workDir() string {
	if m.StateDir != "" {
		return filepath.Join(m.StateDir, "migrate")
	}
	return "/var/lib/drift/migrate"
}

// runner returns the job's runner here, or nil.
func (m *Manager) runnerOf(id string) *runner {
	m.init()
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.runners[id]
}

// forward sends a request about a job to the node that can answer it:
// the node running it (known to the home), else the home. It returns
// false when the job's runner is on this node.
func (m *Manager) forward(w http.ResponseWriter, r *http.Request, method, suffix string, in any) bool {
	id := r.PathValue("id")
	if m.runnerOf(id) != nil {
		return false
	}
	h, home, err := m.homeOf(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return true
	}
	node := home
	if h != nil {
		info := h.snapshot()
		if info.State == api.JobExited {
			http.Error(w, "job "+id+" has exited", http.StatusConflict)
			return true
		}
		node = info.Node
		if node == m.Self || node == "" {
			http.Error(w, "job "+id+" is not running yet", http.StatusConflict)
			return true
		}
	}
	c, err := m.Peers.Client(node)
	if err != nil {
		http.Error(w, fmt.Sprintf("reach %s, where job %s runs: %v", node, id, err), http.StatusBadGateway)
		return true
	}
	var out json.RawMessage
	if err := c.Call(r.Context(), method, "/v1/jobs/"+id+suffix, in, &out); err != nil {
		code := http.StatusBadGateway
		var se *api.StatusError
		if errors.As(err, &se) {
			code = se.Code
		}
		http.Error(w, err.Error(), code)
		return true
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
	return true
}

// handleMigrate moves a job: where it runs, or forwarded there.
func (m *Manager) handleMigrate(w http.ResponseWriter, r *http.Request) {
	var req api.MigrateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.To == "" {
		http.Error(w, "migrate: want a target node (a name from drift nodes, or home)", http.StatusBadRequest)
		return
	}
	if m.forward(w, r, http.MethodPost, "/migrate", req) {
		return
	}
	res, err := m.Migrate(r.Context(), r.PathValue("id"), req)
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, migrate.ErrNotMigratable) || errors.Is(err, errBadTarget) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	api.WriteJSON(w, res)
}

// errBadTarget marks a migration refused before anything moved.
var errBadTarget = errors.New("nothing moved; the job runs where it was")

// ErrTargetRefused reports that the target declined the job before
// anything moved (busy, blocked, or a CPU that cannot run it).
var ErrTargetRefused = errBadTarget

// Migrate moves job id, running here, to req.To. On any failure the job
// keeps running here and the error says which step failed.
func (m *Manager) Migrate(ctx context.Context, id string, req api.MigrateRequest) (api.MigrateResult, error) {
	r := m.runnerOf(id)
	if r == nil {
		return api.MigrateResult{}, fmt.Errorf("job %s does not run on %s", id, m.Self)
	}
	to := req.To
	if to == "home" {
		to = r.home
	}
	res := api.MigrateResult{Job: id, From: m.Self, To: to}
	if to == m.Self {
		return res, fmt.Errorf("migrate %s: it already runs on %s: %w", id, to, errBadTarget)
	}
	c, err := m.Peers.Client(to)
	if err != nil {
		return res, fmt.Errorf("migrate %s to %s: %v: %w", id, to, err, errBadTarget)
	}
	if !r.migrating.CompareAndSwap(false, true) {
		return res, fmt.Errorf("migrate %s: a migration of it is already under way", id)
	}
	defer r.migrating.Store(false)
	// A target that membership declares dead ends the migration at once
	// (the job resumes here), instead of waiting on TCP.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go m.watchTarget(ctx, to, cancel)
	// The target's CPU must run what the job may use here (P.Haul's
	// check), and the target must still have room.
	check := api.CPUCheckRequest{Job: id, Expect: req.Expect}
	if img, err := m.cpuinfo.dump(ctx); err == nil {
		check.CPUInfo = img
	} else {
		m.log().Warn("cpu info dump", "err", err)
	}
	var admitted api.CPUCheckResult
	if err := c.Call(ctx, http.MethodPost, "/v1/jobs/"+id+"/cpucheck", check, &admitted); err != nil {
		return res, fmt.Errorf("migrate %s to %s: %w: %w", id, to, err, errBadTarget)
	}
	res.TargetLoad = admitted.Load
	os.MkdirAll(m.workDir(), 0o700)
	src := &migrate.Source{WorkDir: m.workDir(), Logger: m.log(), Pid: r.pid, SharedRoot: m.sharedRoot(), StdioPipes: r.inodes[:]}
	snd := sender{c: c, id: id}
	restore := api.RestoreRequest{Spec: r.spec, Home: r.home, Epoch: r.epoch + 1, Stdio: r.inodes, Reason: req.Reason}
	st, err := src.Migrate(ctx, snd,
		func() {
			if err := r.drain(5 * time.Second); err != nil {
				m.log().Warn("migrate: drain", "job", id, "err", err)
			}
		},
		func(ctx context.Context) error {
			if err := c.Call(ctx, http.MethodPost, "/v1/jobs/"+id+"/restore", restore, nil); err != nil {
				return fmt.Errorf("restore on %s: %w", to, err)
			}
			r.moved.Store(true)
			return nil
		})
	res.Rounds, res.Bytes, res.Freeze, res.Total = st.Rounds, st.PreBytes+st.FinalBytes, st.Freeze, st.Total
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.Call(dctx, http.MethodPost, "/v1/jobs/"+id+"/discard", nil, nil)
		dcancel()
		if r.ended(500 * time.Millisecond) {
			m.log().Info("the job ended during its migration", "job", id, "to", to, "err", err)
			return res, fmt.Errorf("migrate %s to %s: the job ended meanwhile: %w", id, to, err)
		}
		m.log().Warn("migration failed; the job runs here still", "job", id, "to", to, "err", err)
		return res, fmt.Errorf("migrate %s to %s: %w", id, to, err)
	}
	m.log().Info("job migrated", "job", id, "to", to, "freeze", st.Freeze, "total", st.Total, "bytes", res.Bytes, "rounds", st.Rounds)
	return res, nil
}

// cpuInfo holds this node's CPU description, dumped once, and the
// sources' descriptions already found compatible: a node's CPU does not
// change while it runs, and each criu run costs seconds on a busy node.
type cpuInfo struct {
	mu   sync.Mutex
	img  []byte
	fits map[[sha256.Size]byte]bool
}

// Prepare does ahead what every migration from here needs, while the
// node is still idle: it dumps this node's CPU description.
func (m *Manager) Prepare(ctx context.Context) {
	if _, err := m.cpuinfo.dump(ctx); err != nil {
		m.log().Warn("cpu info dump", "err", err)
	}
}

func (c *cpuInfo) dump(ctx context.Context) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.img != nil {
		return c.img, nil
	}
	img, err := migrate.CPUInfoDump(ctx, "")
	if err == nil {
		c.img = img
	}
	return img, err
}

// check says whether a job from a node whose CPU img describes can run
// here; only successes are remembered.
func (c *cpuInfo) check(ctx context.Context, img []byte) error {
	sum := sha256.Sum256(img)
	c.mu.Lock()
	ok := c.fits[sum]
	c.mu.Unlock()
	if ok {
		return nil
	}
	if err := migrate.CPUInfoCheck(ctx, "", img); err != nil {
		return err
	}
	c.mu.Lock()
	if c.fits == nil {
		c.fits = map[[sha256.Size]byte]bool{}
	}
	c.fits[sum] = true
	c.mu.Unlock()
	return nil
}

// sender streams a migration's images to the target's agent.
type sender struct {
	c  *api.Client
	id string
}

func (s sender) Send(ctx context.Context, name string, r io.Reader) (int64, error) {
	return s.c.Upload(ctx, "/v1/jobs/"+s.id+"/images/"+name, r)
}

func (m *Manager) target() *migrate.Target {
	os.MkdirAll(m.workDir(), 0o700)
	return &migrate.Target{WorkDir: m.workDir(), Logger: m.log()}
}

func (m *Manager) handleCPUCheck(w http.ResponseWriter, r *http.Request) {
	if ok, why := m.accepting(); !ok {
		http.Error(w, why, http.StatusConflict)
		return
	}
	var req api.CPUCheckRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "cpucheck: want a CPUCheckRequest", http.StatusBadRequest)
		return
	}
	if req.CPUInfo != nil {
		if err := m.cpuinfo.check(r.Context(), req.CPUInfo); err != nil {
			http.Error(w, fmt.Sprintf("%s cannot run it: %v", m.Self, err), http.StatusConflict)
			return
		}
	}
	if !m.admit(r.PathValue("id"), req.Expect) {
		http.Error(w, fmt.Sprintf("%s is busier than the source counted (%d jobs running or arriving, it counted %d): try again later", m.Self, m.load(), *req.Expect), http.StatusConflict)
		return
	}
	api.WriteJSON(w, api.CPUCheckResult{OK: true, Load: m.load()})
}

func (m *Manager) handleImages(w http.ResponseWriter, r *http.Request) {
	if err := m.target().Receive(r.Context(), r.PathValue("id"), r.PathValue("name"), r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	api.WriteJSON(w, map[string]bool{"ok": true})
}

func (m *Manager) handleDiscard(w http.ResponseWriter, r *http.Request) {
	m.arrived(r.PathValue("id"))
	m.target().Discard(r.PathValue("id"))
	api.WriteJSON(w, map[string]bool{"ok": true})
}

// handleRestore restores a job from the images received and runs it as
// the next stint, with fresh stdio pipes in place of the source's.
func (m *Manager) handleRestore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.RestoreRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "restore: want a restore request", http.StatusBadRequest)
		return
	}
	t := m.target()
	defer t.Discard(id)
	defer m.arrived(id)
	var s sink
	var started func(*runner)
	if req.Home == m.Self {
		h, _, err := m.homeOf(id)
		if err != nil || h == nil {
			http.Error(w, fmt.Sprintf("restore %s: no such job homed here", id), http.StatusNotFound)
			return
		}
		s = localSink{h, req.Epoch}
		started = func(rn *runner) { h.runsOn(req.Epoch, m.Self, rn.pid, rn.control, req.Reason) }
	} else {
		rs, err := m.dialStint(context.Background(), req.Home, id, req.Epoch)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		rs.hello.Reason = req.Reason
		s, started = rs, rs.attach
	}
	p, err := newPipes()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pid, err := t.Restore(r.Context(), id, []migrate.InheritFd{
		{Key: fmt.Sprintf("pipe:[%d]", req.Stdio[0]), File: p.jobIn},
		{Key: fmt.Sprintf("pipe:[%d]", req.Stdio[1]), File: p.jobOut},
		{Key: fmt.Sprintf("pipe:[%d]", req.Stdio[2]), File: p.jobErr},
	})
	if err != nil {
		p.closeAll()
		if rs, ok := s.(*remoteSink); ok {
			rs.fc.Close()
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	rn := newRunner(id, req.Epoch, pid, p, waitPID(pid), s, m.log())
	rn.spec, rn.home = req.Spec, req.Home
	m.adopt(id, rn)
	started(rn)
	api.WriteJSON(w, map[string]int{"pid": pid})
}

// adopt records a runner and forgets it when its stint ends.
func (m *Manager) adopt(id string, r *runner) {
	m.mu.Lock()
	m.runners[id] = r
	m.mu.Unlock()
	m.loadChanged()
	m.tasks.Go(func() {
		<-r.done
		m.mu.Lock()
		if m.runners[id] == r {
			delete(m.runners, id)
		}
		m.mu.Unlock()
		m.psMeter.forget(r.pid)
		m.balMeter.forget(r.pid)
		m.loadChanged()
	})
}

// handleWhy says whether a job can move now, and if not, why.
func (m *Manager) handleWhy(w http.ResponseWriter, r *http.Request) {
	if m.forward(w, r, http.MethodGet, "/why", nil) {
		return
	}
	id := r.PathValue("id")
	rn := m.runnerOf(id)
	if rn == nil { // it ended or moved away since forward looked
		http.Error(w, "job "+id+" is no longer running here: ask again", http.StatusConflict)
		return
	}
	reasons, err := migrate.Check(rn.pid, m.sharedRoot(), rn.inodes[:])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	api.WriteJSON(w, api.WhyResult{Job: id, Node: m.Self, Movable: len(reasons) == 0, Reasons: reasons})
}

// incomingTTL bounds how long an admitted migration counts as arriving.
const incomingTTL = 2 * time.Minute

// load is the number of jobs running here or admitted and on their way.
func (m *Manager) load() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(m.runners)
	for id, t := range m.incoming {
		if time.Since(t) > incomingTTL {
			delete(m.incoming, id)
			continue
		}
		n++
	}
	return n
}

// admit records an arriving job, unless expect is set and this node
// already runs or receives more jobs than that.
func (m *Manager) admit(id string, expect *int) bool {
	if expect != nil && m.load() > *expect {
		return false
	}
	m.mu.Lock()
	if m.incoming == nil {
		m.incoming = map[string]time.Time{}
	}
	m.incoming[id] = time.Now()
	m.mu.Unlock()
	m.loadChanged()
	return true
}

// arrived forgets an admitted job: restored (now a runner) or abandoned.
func (m *Manager) arrived(id string) {
	m.mu.Lock()
	delete(m.incoming, id)
	m.mu.Unlock()
	m.loadChanged()
}

// watchTarget cancels a migration when its target leaves the cluster.
func (m *Manager) watchTarget(ctx context.Context, target string, cancel context.CancelCauseFunc) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		alive := false
		for _, n := range m.Peers.Nodes() {
			alive = alive || n == target
		}
		if !alive {
			cancel(fmt.Errorf("%s left the cluster during the migration", target))
			return
		}
	}
}
