package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/internal/atomicfile"
	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/migrate"
)

// Peers finds other agents.
type Peers interface {
	// Client returns an API client of the named node's agent.
	Client(node string) (*api.Client, error)
	// Nodes lists the names of the alive members, this node included.
	Nodes() []string
}

// Manager runs this node's jobs and keeps the records of the jobs homed
// here. Its HTTP handlers join the agent's API.
type Manager struct {
	Self       string       // this node's name (required)
	Peers      Peers        // required for anything that crosses nodes
	Logger     *slog.Logger // nil: slog.Default()
	InitCmd    []string     // the job init; nil: drift-job, or this executable, with "job-init" (then --dir=DIR -- CMD ARGS...)
	SharedRoot string       // the cluster's shared directory; "": /cluster
	StateDir   string       // where the job counter is kept; "": /var/lib/drift
	// CheckpointEvery is the cluster's shortest time between two
	// checkpoints of a job that does not say; 0: api.DefaultCheckpointEvery;
	// negative: jobs are checkpointed only when they ask.
	CheckpointEvery time.Duration
	// Place chooses the node for a job started without --node; it returns
	// the node and why. nil: this node.
	Place func() (node, reason string, err error)
	// Accepting says whether this node takes new jobs and migrations (not
	// blocked or draining); it returns why not. nil: always.
	Accepting func() (bool, string)
	// WaitShared waits, briefly, until the shared storage is mounted at
	// SharedRoot and reports whether it is. nil: it is mounted when
	// SharedRoot is a mount point.
	WaitShared func(ctx context.Context) bool
	// KillOrphans: before it answers anything, the Manager kills the jobs
	// an earlier agent of this node left running when it died (the
	// daemon sets it; tests, which share their host, do not).
	KillOrphans bool
	// Failpoints: see migrate.Node.Failpoints (drift-lab's nodes only).
	Failpoints string
	// OnLoad is called when the jobs running or arriving here change, so
	// that the node's load is gossiped at once. nil: nothing.
	OnLoad func()
	// OnCheckpoint is told of each checkpoint of a job running here:
	// result "ok" (with its freeze and size), "skipped" (the job cannot
	// be checkpointed now, or there is no room) or "failed". nil: nothing.
	OnCheckpoint func(result string, freeze time.Duration, bytes int64)
	// Event records an event of the cluster's stream (events.go says
	// which). nil: none.
	Event func(kind string, fields map[string]any)

	mu       sync.Mutex
	homes    map[string]*homeJob
	runners  map[string]*runner
	incoming map[string]arriving // migrations admitted, not yet restored
	held     map[string]*held    // jobs restored here and held stopped until their source lets them run
	waiting  map[string]bool     // jobs here that wait for a core (SetWaiting)
	// toAbandon: per node declared dead, the jobs homed here that were
	// started again elsewhere, which it must kill if it comes back.
	toAbandon map[string][]abandonment
	dead      deadWatch // nodes declared dead, looked at for the jobs they were home to and ran
	seq       int
	// reserved is the counter saved on the shared storage at sharedSeq:
	// ids up to it are given without writing it again (idBlock).
	reserved  int
	sharedSeq string

	base  context.Context    // ends when Run's context does: streams end with it
	stop  context.CancelFunc // ends base
	tasks tasks              // the goroutines Run waits for

	psMeter, balMeter cpuMeter     // CPU use for drift ps, and for the balancer
	mig               migrate.Node // migrations from and to this node
}

func (m *Manager) log() *slog.Logger {
	if m.Logger != nil {
		return m.Logger
	}
	return slog.Default()
}

func (m *Manager) loadChanged() {
	if m.OnLoad != nil {
		m.OnLoad()
	}
}

func (m *Manager) init() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.homes == nil {
		m.homes, m.runners = map[string]*homeJob{}, map[string]*runner{}
		m.base, m.stop = context.WithCancel(context.Background())
		m.mig = migrate.Node{WorkDir: m.workDir(), SharedRoot: m.sharedRoot(), Logger: m.log(), Failpoints: m.Failpoints}
		if m.KillOrphans {
			if n := killOrphans(); n > 0 {
				m.log().Warn("killed the jobs an earlier agent left running: their homes start them again from their checkpoints", "jobs", n)
			}
		}
	}
}

func (m *Manager) initCmd() []string {
	if m.InitCmd != nil {
		return m.InitCmd
	}
	return jobinit.Command(InitArg, "/proc/self/exe")
}

func (m *Manager) sharedRoot() string {
	if m.SharedRoot != "" {
		return m.SharedRoot
	}
	return api.SharedRoot
}

// idBlock is how many ids a node reserves at a time on the shared
// storage. Every write there is a dozen 9P messages that the head
// answers, and a sweep starts a job per task: the node writes the counter
// once per block, and a rebooted node starts after the whole block.
const idBlock = 32

// nextID gives the next job id homed here. The counter survives agent
// restarts in StateDir, and reboots on the shared storage when it is
// mounted (StateDir is in memory on a node): an id is given only once the
// counter is saved, so that neither a restarted agent nor a rebooted node
// gives it again while jobs that had it may still run. The shared
// storage holds the end of a block of ids reserved ahead (idBlock).
func (m *Manager) nextID() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir := m.StateDir
	if dir == "" {
		dir = "/var/lib/drift"
	}
	path := filepath.Join(dir, "job-seq")
	shared := ""
	if root := m.sharedRoot(); m.SharedRoot != "" || isMountPoint(root) {
		shared = filepath.Join(root, ".drift", "homes", m.Self+".seq")
	}
	if shared != m.sharedSeq {
		m.reserved, m.sharedSeq = 0, shared // mounted (again), or gone: read it anew
	}
	for _, p := range []string{path, shared} {
		if p == "" || (p == shared && m.seq < m.reserved) {
			continue
		}
		if b, err := os.ReadFile(p); err == nil {
			var n int
			fmt.Sscan(string(b), &n)
			m.seq = max(m.seq, n)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("job id counter: %w", err)
	}
	next := []byte(fmt.Sprint(m.seq + 1))
	if err := os.WriteFile(path, next, 0o644); err != nil {
		return "", fmt.Errorf("job id counter: %w", err)
	}
	if shared != "" && m.seq >= m.reserved {
		end := m.seq + idBlock
		if err := writeFileSync(shared, []byte(fmt.Sprint(end))); err != nil {
			m.log().Warn("job id counter on the shared storage: a reboot of this node may give ids again", "err", err)
		} else {
			m.reserved = end
		}
	}
	m.seq++
	return newID(m.Self, m.seq), nil
}

// writeFileSync writes b to path whole or not at all.
func writeFileSync(path string, b []byte) error { return atomicfile.Write(path, b, 0o644) }

// Routes are the job endpoints of the agent's API.
func (m *Manager) Routes() map[string]http.Handler {
	m.init()
	routes := map[string]http.Handler{
		"POST /v1/jobs/run":          http.HandlerFunc(m.handleRun),
		"POST /v1/jobs/{id}/attach":  http.HandlerFunc(m.handleAttach),
		"POST /v1/jobs/{id}/signal":  http.HandlerFunc(m.handleSignal),
		"GET /v1/jobs":               http.HandlerFunc(m.handleList),
		"GET /v1/ps":                 http.HandlerFunc(m.handlePS),
		"POST /v1/jobs/{id}/start":   http.HandlerFunc(m.handleStart),
		"POST /v1/jobs/{id}/stint":   http.HandlerFunc(m.handleStint),
		"POST /v1/jobs/{id}/abandon": http.HandlerFunc(m.handleAbandon),
	}
	m.migrateRoutes(routes)
	return routes
}

// start creates the job's home record and starts its first stint, here
// or on spec.Node.
func (m *Manager) start(ctx context.Context, spec api.JobSpec) (*homeJob, error) {
	m.init()
	if spec.Name == "" {
		spec.Name = filepath.Base(spec.Argv[0])
	}
	node := spec.Node
	switch {
	case node == "home":
		node = m.Self
	case node == "" && m.Place != nil:
		n, why, err := m.Place()
		if err != nil {
			return nil, err
		}
		node = n
		m.log().Info("job placed", "node", n, "why", why)
	case node == "":
		node = m.Self
	}
	id, err := m.nextID()
	if err != nil {
		return nil, err
	}
	m.forgetExited(time.Now())
	h := m.newHome(api.JobInfo{ID: id, Name: spec.Name, Home: m.Self, State: api.JobStarting, Started: time.Now(), Argv: spec.Argv, Stay: spec.Stay}, spec)
	m.mu.Lock()
	m.homes[id] = h
	m.mu.Unlock()
	if node == m.Self {
		err = m.startLocal(id, spec, m.Self, 1, localSink{h, 1}, func(r *runner) {
			h.runsOn(1, m.Self, r.pid, r.control, "")
		})
	} else {
		err = m.startRemote(ctx, node, id, spec)
	}
	if err != nil {
		m.mu.Lock()
		delete(m.homes, id)
		m.mu.Unlock()
		return nil, err
	}
	m.log().Info("job started", "job", id, "node", node, "argv", spec.Argv)
	return h, nil
}

func (m *Manager) accepting() (bool, string) {
	if m.Accepting == nil {
		return true, ""
	}
	return m.Accepting()
}

// Resident describes a job running on this node, for the balancer.
type Resident struct {
	ID    string
	CPU   float64   // cores it wanted over the last sample: it ran or waited to run
	RSS   uint64    // resident bytes a dump copies: what moving it costs, as pre-copy counts it
	Since time.Time // when it arrived here
	Moves int
	Stay  bool
	// Waiting: it waits for a core and runs nothing (SetWaiting).
	Waiting bool
	// Work is the CPU time it is expected to need still, when jobs of
	// its command and home have ended since it started (its home says
	// how much CPU time they used); 0: not known.
	Work time.Duration
}

// SetWaiting marks a job running here as waiting for a core, or no
// longer: a sweep's task started ahead of its turn, which runs nothing
// until a core frees. Such a job does not count in the node's load
// (Load), which the node gossips and the balancer weighs.
func (m *Manager) SetWaiting(id string, waiting bool) {
	m.mu.Lock()
	if _, ok := m.runners[id]; ok && waiting {
		if m.waiting == nil {
			m.waiting = map[string]bool{}
		}
		m.waiting[id] = true
	} else {
		delete(m.waiting, id)
	}
	m.mu.Unlock()
	m.loadChanged()
}

// Residents lists the jobs running on this node that are not moving now.
func (m *Manager) Residents() []Resident {
	m.init()
	m.mu.Lock()
	rs := make([]*runner, 0, len(m.runners))
	waiting := map[string]bool{}
	for _, r := range m.runners {
		if !r.moving() && !r.moved.Load() {
			rs = append(rs, r)
			waiting[r.id] = m.waiting[r.id]
		}
	}
	m.mu.Unlock()
	out := make([]Resident, 0, len(rs))
	for _, r := range rs {
		u := m.balMeter.read(r.pid, r.arrived)
		out = append(out, Resident{ID: r.id, CPU: u.Demand, RSS: u.Anon, Since: r.arrived, Moves: r.epoch - 1, Stay: r.spec.Stay,
			Waiting: waiting[r.id], Work: r.workLeft(u.Used)})
	}
	return out
}

// Load is the number of jobs running on this node or admitted and on
// their way here: what the node gossips as its jobs.
func (m *Manager) Load() int {
	m.init()
	return m.load()
}
