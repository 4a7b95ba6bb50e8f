package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
)

func (m *Manager) migrateRoutes(routes map[string]http.Handler) {
	routes["POST /v1/jobs/{id}/migrate"] = http.HandlerFunc(m.handleMigrate)
	routes["GET /v1/jobs/{id}/why"] = http.HandlerFunc(m.handleWhy)
	routes["POST /v1/jobs/{id}/admit"] = http.HandlerFunc(m.handleAdmit)
	routes["PUT /v1/jobs/{id}/images/{name}"] = api.LargeBody(http.HandlerFunc(m.handleImages))
	routes["POST /v1/jobs/{id}/restore"] = http.HandlerFunc(m.handleRestore)
	routes["POST /v1/jobs/{id}/discard"] = http.HandlerFunc(m.handleDiscard)
	routes["POST /v1/jobs/{id}/commit"] = http.HandlerFunc(m.handleCommit)
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
	ctx := r.Context()
	if suffix == "/migrate" { // as long as a migration may take
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, api.MigrateTimeout)
		defer cancel()
	}
	var out json.RawMessage
	if err := c.Call(ctx, method, "/v1/jobs/"+id+suffix, in, &out); err != nil {
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
		if errors.Is(err, migrate.ErrNotMigratable) || errors.Is(err, ErrTargetRefused) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	api.WriteJSON(w, res)
}

// Why a migration did not happen, for callers that act on the kind (the
// balancer backs off each target by it). A refusal before anything moved
// wraps ErrTargetRefused and, when known, one of the others.
var (
	ErrTargetRefused     = migrate.ErrRefused
	ErrTargetBusy        = migrate.ErrTargetBusy
	ErrCPUIncompatible   = migrate.ErrCPUIncompatible
	ErrTargetUnreachable = migrate.ErrTargetUnreachable
)

// Migrate moves job id, running here, to req.To. On any failure the job
// keeps running here and the error says which step failed.
func (m *Manager) Migrate(ctx context.Context, id string, req api.MigrateRequest) (res api.MigrateResult, err error) {
	defer func() { m.migrated(id, req, res, err) }()
	r := m.runnerOf(id)
	if r == nil {
		return api.MigrateResult{}, fmt.Errorf("job %s does not run on %s", id, m.Self)
	}
	to := req.To
	if to == "home" {
		to = r.homeNode()
	}
	res = api.MigrateResult{Job: id, From: m.Self, To: to}
	if to == m.Self {
		return res, fmt.Errorf("migrate %s: it already runs on %s: %w", id, to, ErrTargetRefused)
	}
	c, err := m.Peers.Client(to)
	if err != nil {
		return res, fmt.Errorf("migrate %s to %s: %w: %w: %w", id, to, err, ErrTargetUnreachable, ErrTargetRefused)
	}
	// A checkpoint under way ends within seconds: the move waits for it.
	for deadline := time.Now().Add(time.Minute); !r.migrating.CompareAndSwap(false, true); {
		if !r.checkpointing.Load() || time.Now().After(deadline) || ctx.Err() != nil {
			return res, fmt.Errorf("migrate %s: a migration of it is already under way", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	defer r.migrating.Store(false)
	// A signal sent now would reach a copy that is frozen, or left
	// behind: it is kept, and delivered where the job runs once the move
	// is over.
	r.holdSignals()
	defer func() {
		if err != nil {
			r.releaseSignals() // the job runs here still, or is gone
		}
	}()
	// A target that membership declares dead ends the migration at once
	// (the job resumes here), instead of waiting on TCP.
	ctx, cancel := context.WithCancelCause(ctx)
	var watch sync.WaitGroup
	watch.Go(func() { m.watchTarget(ctx, to, cancel) })
	defer func() { cancel(nil); watch.Wait() }()
	d := &apiDest{c: c, id: id, to: to, admit: api.AdmitRequest{Job: id, Expect: req.Expect, Home: r.homeNode(), Epoch: r.epoch + 1, Reason: req.Reason},
		restore:  api.RestoreRequest{Spec: r.spec, Home: r.homeNode(), Epoch: r.epoch + 1, Stdio: r.inodes, Reason: req.Reason},
		restored: func() { r.moved.Store(true) }, stdin: r.heldStdin,
		started: func(ctx context.Context) (bool, error) { return m.runsOn(ctx, r.homeNode(), id, to) }}
	mv, err := m.mig.Move(ctx, migrate.Job{Pid: r.pid, Stdio: r.inodes}, d, func() {
		if err := r.drain(5 * time.Second); err != nil {
			m.log().Warn("migrate: drain", "job", id, "err", err)
		}
		r.holdStdin()
	})
	res.TargetLoad = mv.TargetLoad
	res.Rounds, res.Bytes, res.Freeze, res.Total = mv.Rounds, mv.PreBytes+mv.FinalBytes, mv.Freeze, mv.Total
	if err != nil && !errors.Is(err, migrate.ErrCommitLost) {
		r.releaseStdin() // the job runs here still
	}
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && cause != ctx.Err() {
			err = fmt.Errorf("%w (%w)", err, cause)
		}
		if errors.Is(err, ErrTargetRefused) {
			return res, fmt.Errorf("migrate %s to %s: %w", id, to, err)
		}
		if errors.Is(err, migrate.ErrCommitLost) {
			m.log().Error("migration: the job left here but the target was never told to run it", "job", id, "to", to, "err", err)
			return res, fmt.Errorf("migrate %s to %s: %w", id, to, err)
		}
		if r.ended(500 * time.Millisecond) {
			m.log().Info("the job ended during its migration", "job", id, "to", to, "err", err)
			return res, fmt.Errorf("migrate %s to %s: the job ended meanwhile: %w", id, to, err)
		}
		m.log().Warn("migration failed; the job runs here still", "job", id, "to", to, "err", err)
		return res, fmt.Errorf("migrate %s to %s: %w", id, to, err)
	}
	m.log().Info("job migrated", "job", id, "to", to, "freeze", mv.Freeze, "total", mv.Total, "bytes", res.Bytes, "rounds", mv.Rounds)
	return res, nil
}

// apiDest is the target of a migration from here, over the agents' API.
type apiDest struct {
	c        *api.Client
	id, to   string
	admit    api.AdmitRequest
	restore  api.RestoreRequest
	restored func()                                  // the job runs on the target: its stint here ends as moved
	stdin    func() ([]byte, bool)                   // the stdin held for the target, and whether it ended, asked while the job is frozen
	started  func(ctx context.Context) (bool, error) // whether the job's home has seen it run on the target
}

func (d *apiDest) Admit(ctx context.Context, cpuinfo []byte) (int, error) {
	req := d.admit
	req.CPUInfo = cpuinfo
	res, err := d.c.Admit(ctx, d.id, req)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", err, refusal(err))
	}
	return res.Load, nil
}

// refusal is the kind of refusal a failed admission stands for: the
// target's answer (see handleAdmit), or no answer at all.
func refusal(err error) error {
	var se *api.StatusError
	switch {
	case !errors.As(err, &se):
		return ErrTargetUnreachable
	case se.Code == http.StatusUnprocessableEntity:
		return ErrCPUIncompatible
	case se.Code == http.StatusConflict:
		return ErrTargetBusy
	}
	return fmt.Errorf("the target answered %d", se.Code)
}

func (d *apiDest) Send(ctx context.Context, name string, r io.Reader) (int64, error) {
	return d.c.SendImage(ctx, d.id, name, r)
}

func (d *apiDest) Restore(ctx context.Context) error {
	req := d.restore
	req.Stdin, req.StdinEOF = d.stdin()
	if err := d.c.Restore(ctx, d.id, req); err != nil {
		return fmt.Errorf("restore on %s: %w", d.to, err)
	}
	return nil
}

func (d *apiDest) Discard(ctx context.Context) error { return d.c.Discard(ctx, d.id) }

// Commit lets the target run its held copy; an answer that it will not
// (it holds none: it gave up waiting, or the migration was discarded)
// wraps migrate.ErrNotCommitted.
func (d *apiDest) Commit(ctx context.Context) error {
	err := d.c.Commit(ctx, d.id)
	var se *api.StatusError
	switch {
	case err == nil:
		d.restored()
		return nil
	case errors.As(err, &se):
		return fmt.Errorf("%s: %w: %w", d.to, migrate.ErrNotCommitted, err)
	}
	return err
}

func (d *apiDest) Started(ctx context.Context) (bool, error) {
	ok, err := d.started(ctx)
	if ok || err != nil {
		// It runs there, or nobody can tell (migrate.ErrCommitLost):
		// either way the copy here goes, and its stint ends as moved. The
		// home ends the job as lost in its move if no stint starts.
		d.restored()
	}
	return ok, err
}

// runsOn asks job id's home whether the job runs (or ran) on node.
func (m *Manager) runsOn(ctx context.Context, home, id, node string) (bool, error) {
	if home == m.Self {
		m.mu.Lock()
		h := m.homes[id]
		m.mu.Unlock()
		if h == nil {
			return false, fmt.Errorf("job %s is not homed here", id)
		}
		return h.snapshot().Node == node, nil
	}
	j, err := m.askHome(ctx, home, id)
	if err != nil {
		return false, err
	}
	if j == nil {
		return false, fmt.Errorf("%s, the job's home, has no record of it", home)
	}
	return j.Node == node, nil
}

// askHome asks node home for its record of job id: nil if it has none.
func (m *Manager) askHome(ctx context.Context, home, id string) (*api.JobInfo, error) {
	c, err := m.Peers.Client(home)
	if err != nil {
		return nil, err
	}
	js, err := c.Jobs(ctx)
	if err != nil {
		return nil, fmt.Errorf("ask %s, the job's home: %w", home, err)
	}
	for _, j := range js {
		if j.ID == id {
			return &j, nil
		}
	}
	return nil, nil
}

// Prepare does ahead what every migration from here needs, while the
// node is still idle: it dumps this node's CPU description.
func (m *Manager) Prepare(ctx context.Context) {
	m.init()
	if _, err := m.mig.CPUInfo(ctx); err != nil {
		m.log().Warn("cpu info dump", "err", err)
	}
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
	ck, note := rn.checkpointState()
	if ck != nil {
		c := *ck
		c.Stdin = nil
		ck = &c
	}
	api.WriteJSON(w, api.WhyResult{Job: id, Node: m.Self, Movable: len(reasons) == 0, Reasons: reasons, Checkpoint: ck, NoCheckpoint: note})
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
			cancel(fmt.Errorf("%s left the cluster during the migration: %w", target, ErrTargetUnreachable))
			return
		}
	}
}
