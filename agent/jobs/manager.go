package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
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
	InitCmd    []string     // the job init; nil: this executable with "job-init --"
	SharedRoot string       // the cluster's shared directory; "": /cluster
	StateDir   string       // where the job counter is kept; "": /var/lib/drift
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
	// OnLoad is called when the jobs running or arriving here change, so
	// that the node's load is gossiped at once. nil: nothing.
	OnLoad func()

	mu       sync.Mutex
	homes    map[string]*homeJob
	runners  map[string]*runner
	incoming map[string]time.Time // migrations admitted, not yet restored
	seq      int

	psMeter, balMeter cpuMeter // CPU use for drift ps, and for the balancer
	cpuinfo           cpuInfo  // this node's CPU, as CRIU describes it
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
	}
}

func (m *Manager) initCmd() []string {
	if m.InitCmd != nil {
		return m.InitCmd
	}
	return []string{"/proc/self/exe", InitArg, "--"}
}

func (m *Manager) sharedRoot() string {
	if m.SharedRoot != "" {
		return m.SharedRoot
	}
	return api.SharedRoot
}

// nextID gives the next job id homed here. The counter survives agent
// restarts in StateDir; an id is given only once the counter is saved, so
// that a restarted agent never gives it again.
func (m *Manager) nextID() (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dir := m.StateDir
	if dir == "" {
		dir = "/var/lib/drift"
	}
	path := filepath.Join(dir, "job-seq")
	if m.seq == 0 {
		if b, err := os.ReadFile(path); err == nil {
			fmt.Sscan(string(b), &m.seq)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("job id counter: %w", err)
	}
	if err := os.WriteFile(path, []byte(fmt.Sprint(m.seq+1)), 0o644); err != nil {
		return "", fmt.Errorf("job id counter: %w", err)
	}
	m.seq++
	return newID(m.Self, m.seq), nil
}

// Routes are the job endpoints of the agent's API.
func (m *Manager) Routes() map[string]http.Handler {
	m.init()
	routes := map[string]http.Handler{
		"POST /v1/jobs/run":         http.HandlerFunc(m.handleRun),
		"POST /v1/jobs/{id}/attach": http.HandlerFunc(m.handleAttach),
		"POST /v1/jobs/{id}/signal": http.HandlerFunc(m.handleSignal),
		"GET /v1/jobs":              http.HandlerFunc(m.handleList),
		"GET /v1/ps":                http.HandlerFunc(m.handlePS),
		"POST /v1/jobs/{id}/start":  http.HandlerFunc(m.handleStart),
		"POST /v1/jobs/{id}/stint":  http.HandlerFunc(m.handleStint),
	}
	m.migrateRoutes(routes)
	return routes
}

// handleRun starts a job homed here and relays its terminal.
func (m *Manager) handleRun(w http.ResponseWriter, r *http.Request) {
	var req api.RunRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Argv) == 0 {
		http.Error(w, "drift run: want a command to run (drift run -- CMD ARGS...)", http.StatusBadRequest)
		return
	}
	h, err := m.start(r.Context(), req.JobSpec)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	info := h.snapshot()
	if req.Detach {
		api.WriteJSON(w, info)
		return
	}
	fc := api.Upgrade(w, r)
	if fc == nil {
		return
	}
	m.terminal(streamContext(r), fc, h, info)
}

// terminal relays a client's stream to and from a job homed here.
func (m *Manager) terminal(ctx context.Context, fc *api.FrameConn, h *homeJob, info api.JobInfo) {
	defer fc.Close()
	fc.WriteJSON(api.FrameInfo, info)
	if !h.attach(fc) {
		return
	}
	defer h.detach(fc)
	frames := make(chan api.Frame)
	go func() {
		defer close(frames)
		for {
			f, err := fc.Read()
			if err != nil {
				return
			}
			frames <- f
		}
	}()
	for {
		select {
		case <-h.exited:
			return
		case <-ctx.Done():
			return
		case f, ok := <-frames:
			if !ok {
				return // the client went away; the job goes on
			}
			h.send(f)
		}
	}
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
	h := newHomeJob(api.JobInfo{ID: id, Name: spec.Name, Home: m.Self, State: api.JobStarting, Started: time.Now(), Argv: spec.Argv, Stay: spec.Stay})
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

func (m *Manager) startRemote(ctx context.Context, node, id string, spec api.JobSpec) error {
	c, err := m.Peers.Client(node)
	if err != nil {
		return fmt.Errorf("start on %s: %w", node, err)
	}
	if err := c.StartStint(ctx, id, api.StartRequest{Spec: spec, Home: m.Self, Epoch: 1}); err != nil {
		return fmt.Errorf("start on %s: %w", node, err)
	}
	return nil
}

// startLocal starts a stint of job id here, streaming to s.
func (m *Manager) startLocal(id string, spec api.JobSpec, home string, epoch int, s sink, started func(*runner)) error {
	dir := spec.Dir
	root := m.sharedRoot()
	if dir == "" || dir == root || strings.HasPrefix(dir, root+"/") {
		// A job started before the node has mounted the shared storage
		// waits for it: what it wrote to the bare mount point would be
		// hidden once the mount arrives.
		mounted := m.sharedMounted()
		switch {
		case dir == "" && mounted:
			dir = root
		case dir == "":
			dir = "/"
		case !mounted:
			return fmt.Errorf("start in %s: the shared storage is not mounted on %s (drift storage says why)", dir, m.Self)
		}
	}
	if !hasVar(spec.Env, "PATH") {
		spec.Env = append(spec.Env, "PATH="+NodePath)
	}
	cmd, p, err := startProcess(m.initCmd(), spec, dir)
	if err != nil {
		return err
	}
	r := newRunner(id, epoch, cmd.Process.Pid, p, waitCmd(cmd), s, m.log())
	r.spec, r.home = spec, home
	m.adopt(id, r)
	started(r)
	return nil
}

// sharedMounted waits briefly for the shared storage and reports whether
// it is mounted.
func (m *Manager) sharedMounted() bool {
	if m.WaitShared != nil {
		// Less than the 30 s a home gives a remote start: a start that
		// outlived its caller would run a job nobody has a record of.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		return m.WaitShared(ctx)
	}
	return isMountPoint(m.sharedRoot())
}

// isMountPoint reports whether dir is a directory on another device than
// its parent.
func isMountPoint(dir string) bool {
	var st, parent unix.Stat_t
	if unix.Stat(dir, &st) != nil || unix.Stat(filepath.Dir(dir), &parent) != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && st.Dev != parent.Dev
}

func hasVar(env []string, name string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, name+"=") {
			return true
		}
	}
	return false
}

// handleStart runs a stint here for a job homed elsewhere: the stint
// streams to the home.
func (m *Manager) handleStart(w http.ResponseWriter, r *http.Request) {
	var req api.StartRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Spec.Argv) == 0 {
		http.Error(w, "start: want a job spec", http.StatusBadRequest)
		return
	}
	if ok, why := m.accepting(); !ok {
		http.Error(w, why, http.StatusConflict)
		return
	}
	id := r.PathValue("id")
	s, err := m.dialStint(context.Background(), req.Home, id, req.Epoch)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	err = m.startLocal(id, req.Spec, req.Home, req.Epoch, s, func(r *runner) { s.attach(r) })
	if err != nil {
		s.fc.Close()
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	api.WriteJSON(w, map[string]string{"node": m.Self})
}

// remoteSink streams a stint to its home over the API.
type remoteSink struct {
	fc    *api.FrameConn
	hello api.StintHello
	m     *Manager
}

func (m *Manager) dialStint(ctx context.Context, home, id string, epoch int) (*remoteSink, error) {
	c, err := m.Peers.Client(home)
	if err != nil {
		return nil, fmt.Errorf("reach home %s: %w", home, err)
	}
	s := &remoteSink{m: m, hello: api.StintHello{Epoch: epoch, Node: m.Self}}
	return s, func() error {
		s.fc, err = c.OpenStint(ctx, id, s.hello)
		return err
	}()
}

// attach starts relaying the home's control frames to r and tells the
// home the job's PID here.
func (s *remoteSink) attach(r *runner) {
	s.fc.WriteJSON(api.FrameInfo, api.StintHello{Epoch: s.hello.Epoch, Node: s.m.Self, PID: r.pid, Reason: s.hello.Reason})
	go func() {
		for {
			f, err := s.fc.Read()
			if err != nil {
				return
			}
			r.control(f)
		}
	}()
}

func (s *remoteSink) output(t byte, data []byte) error { return s.fc.Write(t, data) }

func (s *remoteSink) end(exit *api.ExitStatus) error {
	defer s.fc.Close()
	if exit == nil {
		return s.fc.Write(FrameMoved, nil)
	}
	return s.fc.WriteJSON(api.FrameExit, exit)
}

// handleStint is the home's end of a remote stint.
func (m *Manager) handleStint(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	m.mu.Lock()
	h := m.homes[id]
	m.mu.Unlock()
	if h == nil {
		http.Error(w, "no job "+id+" is homed here", http.StatusNotFound)
		return
	}
	var hello api.StintHello
	json.NewDecoder(r.Body).Decode(&hello)
	fc := api.Upgrade(w, r)
	if fc == nil {
		return
	}
	defer fc.Close()
	for {
		f, err := fc.Read()
		if err != nil {
			h.stintEnded(hello.Epoch, &api.ExitStatus{Code: 255, Error: fmt.Sprintf("lost the connection to %s: %v", hello.Node, err)})
			return
		}
		switch f.Type {
		case api.FrameInfo:
			var hi api.StintHello
			json.Unmarshal(f.Data, &hi)
			h.runsOn(hello.Epoch, hi.Node, hi.PID, func(c api.Frame) { fc.Write(c.Type, c.Data) }, hi.Reason)
		case api.FrameStdout, api.FrameStderr:
			h.output(hello.Epoch, f.Type, f.Data)
		case FrameMoved:
			h.stintEnded(hello.Epoch, nil)
			return
		case api.FrameExit:
			var st api.ExitStatus
			json.Unmarshal(f.Data, &st)
			h.stintEnded(hello.Epoch, &st)
			return
		}
	}
}

// handleAttach reconnects a terminal to a job homed here, or forwards to
// its home.
func (m *Manager) handleAttach(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	h, home, err := m.homeOf(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, 1<<16))
	fc := api.Upgrade(w, r)
	if fc == nil {
		return
	}
	if h != nil {
		m.terminal(streamContext(r), fc, h, h.snapshot())
		return
	}
	m.proxyStream(streamContext(r), fc, home, "/v1/jobs/"+id+"/attach")
}

// proxyStream joins a client's stream to the same endpoint on node.
func (m *Manager) proxyStream(ctx context.Context, fc *api.FrameConn, node, path string) {
	defer fc.Close()
	c, err := m.Peers.Client(node)
	if err != nil {
		fc.Write(api.FrameError, []byte(err.Error()))
		return
	}
	up, err := c.Stream(ctx, path, struct{}{})
	if err != nil {
		fc.Write(api.FrameError, []byte(fmt.Sprintf("%s: %v", node, err)))
		return
	}
	defer up.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			f, err := up.Read()
			if err != nil {
				return
			}
			if fc.Write(f.Type, f.Data) != nil {
				return
			}
		}
	}()
	go func() {
		for {
			f, err := fc.Read()
			if err != nil {
				up.Close()
				return
			}
			up.Write(f.Type, f.Data)
		}
	}()
	<-done
}

// homeOf returns the job's record if it is homed here, else the name of
// its home node.
func (m *Manager) homeOf(id string) (*homeJob, string, error) {
	m.init()
	home, err := api.JobHome(id)
	if err != nil {
		return nil, "", err
	}
	m.mu.Lock()
	h := m.homes[id]
	m.mu.Unlock()
	if home == m.Self {
		if h == nil {
			return nil, "", fmt.Errorf("no job %s (drift ps lists the jobs)", id)
		}
		return h, home, nil
	}
	return nil, home, nil
}

// handleSignal sends a signal to a job, through its home.
func (m *Manager) handleSignal(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.SignalRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Signal <= 0 || req.Signal > 64 {
		http.Error(w, "signal: want a signal number between 1 and 64", http.StatusBadRequest)
		return
	}
	h, home, err := m.homeOf(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusNotFound)
		return
	}
	if h == nil {
		c, err := m.Peers.Client(home)
		if err == nil {
			err = c.Signal(r.Context(), id, req.Signal)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("signal %s through its home %s: %v", id, home, err), http.StatusBadGateway)
			return
		}
		api.WriteJSON(w, map[string]string{"job": id})
		return
	}
	if h.snapshot().State == api.JobExited {
		http.Error(w, "job "+id+" has exited", http.StatusConflict)
		return
	}
	if !h.send(api.Frame{Type: api.FrameSignal, Data: []byte{byte(req.Signal)}}) {
		http.Error(w, "job "+id+" is not running yet", http.StatusConflict)
		return
	}
	api.WriteJSON(w, map[string]string{"job": id})
}

// Local lists the jobs homed or running here.
func (m *Manager) Local() []api.JobInfo {
	m.init()
	m.mu.Lock()
	var out []api.JobInfo
	for _, h := range m.homes {
		out = append(out, h.snapshot())
	}
	runners := make(map[string]*runner, len(m.runners))
	for id, r := range m.runners {
		runners[id] = r
	}
	m.mu.Unlock()
	for i := range out {
		if r := runners[out[i].ID]; r != nil {
			out[i].CPU, out[i].RSS = r.usage(&m.psMeter)
			if r.migrating.Load() && out[i].State == api.JobRunning {
				out[i].State = api.JobMigrating
			}
			delete(runners, out[i].ID)
		}
	}
	for id, r := range runners {
		info := api.JobInfo{ID: id, Node: m.Self, State: api.JobRunning, PID: r.pid}
		if r.migrating.Load() {
			info.State = api.JobMigrating
		}
		info.CPU, info.RSS = r.usage(&m.psMeter)
		out = append(out, info)
	}
	return out
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
}

// Residents lists the jobs running on this node that are not moving now.
func (m *Manager) Residents() []Resident {
	m.init()
	m.mu.Lock()
	rs := make([]*runner, 0, len(m.runners))
	for _, r := range m.runners {
		if !r.migrating.Load() && !r.moved.Load() {
			rs = append(rs, r)
		}
	}
	m.mu.Unlock()
	out := make([]Resident, 0, len(rs))
	for _, r := range rs {
		u := m.balMeter.read(r.pid, r.arrived)
		out = append(out, Resident{ID: r.id, CPU: u.Demand, RSS: u.Anon, Since: r.arrived, Moves: r.epoch - 1, Stay: r.spec.Stay})
	}
	return out
}

// Load is the number of jobs running on this node or admitted and on
// their way here: what the node gossips as its jobs.
func (m *Manager) Load() int {
	m.init()
	return m.load()
}

func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, m.Local())
}

// handlePS lists every job in the cluster: each node's own list, merged
// (the home knows a job's record, the running node its CPU and memory).
func (m *Manager) handlePS(w http.ResponseWriter, r *http.Request) {
	all := map[string]api.JobInfo{}
	merge := func(list []api.JobInfo) {
		for _, j := range list {
			cur, ok := all[j.ID]
			switch {
			case !ok:
				all[j.ID] = j
			case j.Home != "": // the home's record, with the runner's figures
				j.CPU, j.RSS = max(j.CPU, cur.CPU), max(j.RSS, cur.RSS)
				j.State = movingState(j.State, cur.State)
				all[j.ID] = j
			default:
				cur.CPU, cur.RSS = max(j.CPU, cur.CPU), max(j.RSS, cur.RSS)
				cur.State = movingState(cur.State, j.State)
				all[j.ID] = cur
			}
		}
	}
	merge(m.Local())
	lists, errs := m.askPeers(r.Context())
	for _, list := range lists {
		merge(list)
	}
	out := make([]api.JobInfo, 0, len(all))
	for _, j := range all {
		out = append(out, j)
	}
	sort.Slice(out, func(i, k int) bool {
		return out[i].Started.Before(out[k].Started) || out[i].Started.Equal(out[k].Started) && out[i].ID < out[k].ID
	})
	if len(errs) > 0 {
		m.log().Warn("ps: some nodes did not answer", "errors", strings.Join(errs, "; "))
	}
	api.WriteJSON(w, out)
}

// movingState is a job's state in `drift ps`: the home's, except that a
// running job whose runner is moving it is migrating.
func movingState(home, runner string) string {
	if home == api.JobRunning && runner == api.JobMigrating {
		return api.JobMigrating
	}
	return home
}

// psTimeout bounds how long `drift ps` waits for each node.
const psTimeout = 5 * time.Second

// askPeers asks every other node for its own jobs, all at once, each
// within psTimeout; it returns the lists it got and, for each node that
// did not answer, why.
func (m *Manager) askPeers(ctx context.Context) ([][]api.JobInfo, []string) {
	if m.Peers == nil {
		return nil, nil
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		lists [][]api.JobInfo
		errs  []string
	)
	for _, n := range m.Peers.Nodes() {
		if n == m.Self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := m.Peers.Client(n)
			var list []api.JobInfo
			if err == nil {
				ctx, cancel := context.WithTimeout(ctx, psTimeout)
				list, err = c.Jobs(ctx)
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %v", n, err))
				return
			}
			lists = append(lists, list)
		}()
	}
	wg.Wait()
	return lists, errs
}

// streamContext is the context of a hijacked stream: the server may
// cancel the request's own context once the connection is taken over, so
// a stream lives until the agent stops or either side hangs up.
func streamContext(r *http.Request) context.Context {
	return context.WithoutCancel(r.Context())
}
