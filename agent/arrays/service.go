// Package arrays runs drift's sweeps (drift run --array): many tasks of
// one command, queued on the cluster's shared storage until a node has a
// free core and the memory a task needs.
//
// The queue is the cluster's, not one node's: every node runs a Service
// that reads the queue and takes the tasks it has room for, each by a
// mkdir that only one node can win (store.go). A task runs as an
// ordinary drift job homed on the node that took it, so the balancer can
// still move it; inside the job, drift-job task-exec (package taskexec) sends its
// output to files and writes its result beside the queue, wherever it
// ends. The submitting node may die: the queue goes on without it, and
// the tasks that were running on a dead node are queued again.
package arrays

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/taskexec"
)

// Dir is where the arrays live, under the shared root.
const Dir = "drift/arrays"

// Jobs is what the service needs of this node's job manager.
type Jobs interface {
	// Local lists the jobs homed or running here.
	Local() []api.JobInfo
	// Brief is Local without the jobs' CPU and memory use (CPU, RSS).
	Brief() []api.JobInfo
	// Load is the number of jobs running or arriving here, less those
	// that wait for a core.
	Load() int
	// SetWaiting marks a job here as waiting for a core, or no longer.
	SetWaiting(id string, waiting bool)
}

// Agent is the API of this node's own agent, through which tasks start
// as jobs and are signalled (api.Client does it).
type Agent interface {
	RunDetached(ctx context.Context, spec api.JobSpec) (api.JobInfo, error)
	Signal(ctx context.Context, id string, sig int) error
	PS(ctx context.Context) (api.PSResult, error)
}

// Service takes tasks from the cluster's queue for this node and answers
// the arrays endpoints of the API.
type Service struct {
	Self       string // this node's name (required)
	SharedRoot string // "": api.SharedRoot
	Jobs       Jobs   // required
	Agent      Agent  // required
	// Alive lists the live nodes, this one included (required).
	Alive func() []string
	// Peer is a client of another node's agent, for telling the live
	// nodes to look at the queue at once when an array is queued or
	// killed here. nil: they see it at their next look.
	Peer func(node string) (*api.Client, error)
	// Accepting says whether this node takes new jobs (not blocked or
	// draining). nil: always.
	Accepting func() (bool, string)
	// Shared reports whether the shared storage is mounted. nil: always.
	Shared func() bool
	Cores  int // 0: runtime.NumCPU()
	// Ahead is how many tasks beyond its cores a node keeps started
	// while the queue still holds tasks, so that the next task is ready
	// when one ends: starting a task (its claim on the shared storage,
	// its job, its wrapper) takes seconds on a busy node, seconds its
	// core would otherwise sit idle. A task started ahead waits, running
	// nothing, until a core frees (drift-job task-exec --hold). 0: 1;
	// negative: none.
	Ahead        int
	MemAvailable func() uint64 // bytes free for new processes; nil: /proc/meminfo's MemAvailable
	// Reserve is memory left free for the agent and migrations. 0: 64 MiB.
	Reserve uint64
	// TaskCmd runs a task's wrapper; nil: drift-job task-exec (driftd task-exec on a machine without drift-job).
	TaskCmd  []string
	Interval time.Duration // between two looks at the queue; 0: 2 s
	// FreedEvery is how often Run checks, between looks, whether a job
	// here has ended: a core freed is taken at once, not at the next
	// look. 0: 250 ms.
	FreedEvery time.Duration
	Logger     *slog.Logger // nil: slog.Default()
	// Idle lists the other nodes that take work and have a free core, as
	// they last said (gossip). A task started ahead here, waiting for a
	// core, is given back to the queue for them when nothing else is
	// queued (giveBack). nil: none is given back.
	Idle func() []string

	once    sync.Once
	wake    chan struct{}
	mu      sync.Mutex
	records map[string]*record       // array.json, read once
	results map[string]result        // KEY.A.ok|fail of an array, read once: "ID/KEY.A"
	done    map[string]api.ArrayInfo // arrays whose summary is written
	endSeen map[string]time.Time     // when this node first saw each array end, its summary not written
	killed  map[string]bool          // jobs this node has signalled for drift kill
	active  int                      // arrays under way at the last look
	started map[string]taskRef       // the jobs of the tasks started here, by job id
	waiting map[string]waitRef       // the jobs here of tasks started ahead, not yet let run
	seen    map[string]bool          // jobs adopt has looked at

	idleSince   map[string]time.Time // since when each node in Idle has been seen idle
	lastQueued  int                  // tasks queued at the last full look
	forcedAt    time.Time            // the last full look mayGiveBack asked for while tasks were queued
	noAheadTill atomic.Int64         // unix ns: no task is started ahead here before, as one was given back

	pins   map[string]*os.File // directories of the queue held open (pin.go)
	pinDev uint64              // the device of the queue's root when they were opened

	// The queue's root's modification time (pin.go): as last read, since
	// when it has read so, and as it was when the root was last listed
	// (zero: not trusted).
	rootM, rootMSince, listedM time.Time
	// listedIDs are the arrays the root's last listing named, at
	// listedAt: while its time stays listedM, a look reuses them.
	listedIDs []string
	listedAt  time.Time

	claims     map[string]claim     // claims that name their job, read once: "ID/KEY.A"
	claimTimes map[string]time.Time // when each attempt was claimed, read once: "ID/KEY.A"
	// claimsRead is when reap last read the claims of every running
	// task of each array, those of other nodes included (claimsEvery).
	claimsRead map[string]time.Time
	// forced asks the next look to be a full one: the queue changed
	// (an array killed here, or another node said to look).
	forced bool
	// killedAt is when a quiet look last looked for a kill of the
	// arrays under way.
	killedAt time.Time

	// What the last full look at the queue saw (Tick): a node with no
	// room looks again only when one of these changes.
	lastScan   time.Time
	lastExited int      // jobs here that had ended
	lastAlive  string   // the live nodes
	lastActive []string // the arrays under way
}

// waitRef is a task started ahead, waiting here for a core: its attempt.
type waitRef struct {
	array, key string
	n          int
	at         time.Time
}

// taskRef is a task started on this node: its array, and when.
type taskRef struct {
	array string
	at    time.Time
}

func (s *Service) init() {
	s.once.Do(func() {
		s.wake = make(chan struct{}, 1)
		s.records = map[string]*record{}
		s.results = map[string]result{}
		s.done = map[string]api.ArrayInfo{}
		s.killed = map[string]bool{}
	})
}

func (s *Service) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Service) store() store {
	root := s.SharedRoot
	if root == "" {
		root = api.SharedRoot
	}
	return store{root: filepath.Join(root, Dir)}
}

// lookNow makes the next look at the queue come at once and list the
// queue's root, whatever its modification time says.
func (s *Service) lookNow() {
	s.mu.Lock()
	s.listedM = time.Time{}
	s.forced = true
	s.mu.Unlock()
	s.poke()
}

// tellOthers asks every other live node to look at the queue now, in the
// background: a node that does not answer sees the change at its next
// look anyway.
func (s *Service) tellOthers() {
	for _, node := range s.Alive() {
		if node != s.Self {
			s.tell(node)
		}
	}
}

// tell asks node to look at the queue now, in the background.
func (s *Service) tell(node string) {
	if s.Peer == nil {
		return
	}
	go func() {
		c, err := s.Peer(node)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			err = c.LookAtQueue(ctx)
		}
		if err != nil {
			s.log().Debug("arrays: tell a node to look at the queue", "node", node, "err", err)
		}
	}()
}

func (s *Service) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run looks at the queue every Interval, at once when an array is
// submitted or killed here, and as soon as a job here ends while arrays
// are under way (the node pulls its next task at once instead of sitting
// idle until the next look), until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	s.init()
	every := s.Interval
	if every == 0 {
		every = 2 * time.Second
	}
	freedEvery := s.FreedEvery
	if freedEvery == 0 {
		freedEvery = 250 * time.Millisecond
	}
	t := time.NewTicker(every)
	defer t.Stop()
	freed := time.NewTicker(freedEvery)
	defer freed.Stop()
	for {
		busy := false
		if s.Shared == nil || s.Shared() {
			if err := s.Tick(ctx); err != nil {
				s.log().Warn("arrays: queue", "err", err)
			}
			busy = s.underWay()
		}
		load := s.Jobs.Load()
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				waiting = false
			case <-s.wake:
				waiting = false
			case <-freed.C:
				now := s.Jobs.Load()
				waiting = !busy || now >= load
				load = now
			}
		}
	}
}

// underWay reports whether an array whose summary is not written was
// seen at the last look.
func (s *Service) underWay() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active > 0
}

// view is what one look at an array found.
type view struct {
	rec    *record
	tasks  []*taskState
	killed bool
}

// ended reports whether every task has ended (done, failed or
// cancelled).
func (v *view) ended() bool {
	for _, t := range v.tasks {
		switch t.state(v.rec.Spec.Retries, v.killed) {
		case api.TaskQueued, api.TaskRunning:
			return false
		}
	}
	return true
}

func (v *view) count(state string) int {
	n := 0
	for _, t := range v.tasks {
		if t.state(v.rec.Spec.Retries, v.killed) == state {
			n++
		}
	}
	return n
}

// Tick is one look at the queue: tasks of this node that ended without a
// result, tasks lost with their node, summaries of finished arrays, and
// the tasks this node has room for.
func (s *Service) Tick(ctx context.Context) error {
	s.init()
	st := s.store()
	alive := map[string]bool{}
	names := s.Alive()
	for _, n := range names {
		alive[n] = true
	}
	slices.Sort(names)
	aliveSig := strings.Join(names, " ")
	s.mu.Lock()
	departed := s.lastAlive != "" && slices.ContainsFunc(strings.Fields(s.lastAlive), func(n string) bool { return !alive[n] })
	s.mu.Unlock()
	local := map[string]api.JobInfo{}
	exited := 0
	for _, j := range s.Jobs.Brief() {
		local[j.ID] = j
		if j.State == api.JobExited {
			exited++
		}
	}
	s.release(ctx, local)
	giving := s.mayGiveBack()
	if !giving && s.quiet(exited, aliveSig) {
		return nil
	}
	rootM := s.checkPins(st.root)
	if s.rootUnchanged(rootM) {
		return nil
	}
	ids, listed := s.sameIDs(rootM)
	if !listed {
		listedAt := time.Now()
		var err error
		if ids, err = st.ids(); err != nil {
			return err
		}
		s.listedRoot(rootM, listedAt, ids)
	}
	s.pin(st.root)
	var ps *api.PSResult // asked once, if a dead node's task needs it
	var active []*view
	for _, id := range ids {
		s.mu.Lock()
		_, finished := s.done[id]
		s.mu.Unlock()
		if finished {
			s.unpin(st.dir(id))
			continue
		}
		s.pin(st.dir(id), st.tasks(id))
		v, err := s.look(id)
		if err != nil {
			if fi, serr := os.Stat(st.dir(id)); errors.Is(err, fs.ErrNotExist) && serr == nil && time.Since(fi.ModTime()) < time.Minute {
				// Its node is writing it now (create): seen at the next look.
				s.log().Debug("arrays: array not written yet", "array", id)
				continue
			}
			s.log().Warn("arrays: read array", "array", id, "err", err)
			continue
		}
		if v.ended() && s.summaryWritten(id) { // not read while tasks are under way
			continue
		}
		if s.reap(ctx, v, alive, local, &ps, departed || s.claimsDue(id, local)) {
			if v, err = s.look(id); err != nil { // see what it wrote
				continue
			}
		}
		if s.finish(v, false) {
			continue
		}
		active = append(active, v)
	}
	s.mu.Lock()
	s.active = len(active)
	s.forced = false
	s.lastScan, s.lastExited, s.lastAlive, s.lastActive = time.Now(), exited, aliveSig, nil
	s.lastQueued = 0
	for _, v := range active {
		s.lastActive = append(s.lastActive, v.rec.ID)
		s.lastQueued += v.count(api.TaskQueued)
	}
	s.mu.Unlock()
	s.takeTasks(ctx, active)
	if giving {
		s.giveBack(ctx, local)
	}
	return nil
}

// giveBackAfter is how long a node must have said it has a free core
// before a task waiting here is given back for it: a node that has just
// ended a task takes its own waiting one.
const giveBackAfter = time.Second

// giveBackWait is the shortest wait for a core here that makes a waiting
// task worth giving back: starting it again elsewhere costs a claim and a
// start, a second or two.
const giveBackWait = 3 * time.Second

// mayGiveBack reports whether a task waits here for a core while another
// node has had a free core for giveBackAfter: the look at the queue then
// must not be skipped, as giveBack may act.
func (s *Service) mayGiveBack() bool {
	if s.Idle == nil {
		return false
	}
	idle := s.Idle()
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idleSince == nil {
		s.idleSince = map[string]time.Time{}
	}
	for n := range s.idleSince {
		if !slices.Contains(idle, n) {
			delete(s.idleSince, n)
		}
	}
	ready := false
	for _, n := range idle {
		if n == s.Self {
			continue
		}
		if _, ok := s.idleSince[n]; !ok {
			s.idleSince[n] = now
		}
		ready = ready || now.Sub(s.idleSince[n]) >= giveBackAfter
	}
	if !ready || len(s.waiting) == 0 {
		return false
	}
	// While the last look saw tasks queued (the idle node may lack the
	// memory for them), a full look is made for this at most every 10 s:
	// a full node otherwise skips them, to spare the head.
	if s.lastQueued > 0 && now.Sub(s.forcedAt) < 10*time.Second {
		return false
	}
	s.forcedAt = now
	return true
}

// giveBack returns to the queue the tasks started ahead here that wait
// for a core, one for each node idle for giveBackAfter, when no task is
// left queued (an idle node takes a queued one itself) and no core here
// frees within giveBackWait: there they run at once, here they would wait.
// A task given back has run nothing: its attempt is lost, not failed,
// and the task is queued again; its job here ends.
func (s *Service) giveBack(ctx context.Context, local map[string]api.JobInfo) {
	now := time.Now()
	s.mu.Lock()
	if s.lastQueued > 0 { // counted by this look, before this node took any
		s.mu.Unlock()
		return
	}
	var idle []string
	for n, since := range s.idleSince {
		if now.Sub(since) >= giveBackAfter {
			idle = append(idle, n)
		}
	}
	var ws []string
	for job := range s.waiting {
		ws = append(ws, job)
	}
	// The newest first: the oldest runs here next.
	sort.Slice(ws, func(i, j int) bool { return s.waiting[ws[i]].at.After(s.waiting[ws[j]].at) })
	s.mu.Unlock()
	if len(idle) == 0 || len(ws) == 0 {
		return
	}
	// When a core frees here: the soonest end expected of a task running
	// here; a job that is not one (or a task of an array that has no
	// run time yet) may run on for ever.
	soonest := time.Duration(-1)
	for _, j := range local {
		if j.State == api.JobExited || j.Node != s.Self || slices.Contains(ws, j.ID) {
			continue
		}
		r := s.Remaining(j.ID, now)
		if r == 0 || s.overdue(j.ID, now) {
			soonest = -1
			break
		}
		if soonest < 0 || r < soonest {
			soonest = r
		}
	}
	if soonest >= 0 && soonest < giveBackWait {
		return
	}
	slices.Sort(idle)
	gave := 0
	for _, job := range ws {
		if gave == len(idle) {
			break
		}
		s.mu.Lock()
		w, ok := s.waiting[job]
		s.mu.Unlock()
		if !ok || !waitsItsTurn(local[job].PID) {
			continue
		}
		why := fmt.Sprintf("given back to the queue: it waited for a core on %s while %s had one free", s.Self, idle[gave])
		if err := s.store().lose(w.array, w.key, w.n, why); err != nil {
			s.log().Warn("arrays: give a waiting task back", "array", w.array, "task", w.key, "err", err)
			continue
		}
		if err := s.Agent.Signal(ctx, job, int(syscall.SIGTERM)); err != nil {
			s.log().Warn("arrays: stop a task given back", "array", w.array, "task", w.key, "job", job, "err", err)
		}
		s.mu.Lock()
		delete(s.waiting, job) // counted in no load until its job has ended
		s.mu.Unlock()
		s.log().Info("arrays: task given back to the queue", "array", w.array, "task", w.key, "attempt", w.n, "job", job, "for", idle[gave])
		gave++
	}
	if gave > 0 {
		// Not taken again here at once: the idle nodes are told to look now.
		s.noAheadTill.Store(now.Add(5 * time.Second).UnixNano())
		s.tellOthers()
	}
}

// summaryGrace is how long a node that is not an array's summary writer
// waits, once it has seen the array end, before it writes the summary
// itself: the writer has died, or cannot write.
const summaryGrace = 15 * time.Second

// writesSummary reports whether this node writes the summary of v, which
// has ended: the node that submitted it, if it is alive, else the first
// live node by name; another node once summaryGrace has passed since it
// first saw v end. Writing it means reading every task's result: every
// node doing so at once cost the head, which answers all of them, nodes
// times tasks messages. A node that is not the writer asks it to look at
// once, so that it sees the end without waiting for its next look.
func (s *Service) writesSummary(v *view) bool {
	names := s.Alive()
	writer := v.rec.Node
	if !slices.Contains(names, writer) {
		slices.Sort(names)
		writer = ""
		if len(names) > 0 {
			writer = names[0]
		}
	}
	if writer == "" || writer == s.Self {
		return true
	}
	now := time.Now()
	s.mu.Lock()
	if s.endSeen == nil {
		s.endSeen = map[string]time.Time{}
	}
	first, seen := s.endSeen[v.rec.ID]
	if !seen {
		s.endSeen[v.rec.ID] = now
	}
	s.mu.Unlock()
	if !seen {
		s.tell(writer)
		return false
	}
	return now.Sub(first) >= summaryGrace
}

// rescanEvery is how long a node with no room for a task goes, at most,
// without a full look at the queue.
const rescanEvery = 30 * time.Second

// killedEvery is how often a node with no room looks for a kill of the
// arrays under way: the node where drift kill ran tells the others at
// once (LookAtQueue), and this is for one that did not hear it.
const killedEvery = 10 * time.Second

// quiet reports whether a full look at the queue can find nothing to do
// here: the node has no room for a task (a free core, or a task to start
// ahead), none of its jobs has ended, no node has come or gone and no
// sweep under way was killed since the last look, which was lately. Each
// full look reads the queue's directories on the shared storage, which
// the head serves to every node: a full node skips it.
func (s *Service) quiet(exited int, alive string) bool {
	if s.room() {
		return false
	}
	s.mu.Lock()
	same := !s.forced && !s.lastScan.IsZero() && time.Since(s.lastScan) < rescanEvery && exited == s.lastExited && alive == s.lastAlive
	active := slices.Clone(s.lastActive)
	checkKilled := time.Since(s.killedAt) >= killedEvery
	if same && checkKilled {
		s.killedAt = time.Now()
	}
	s.mu.Unlock()
	if !same {
		return false
	}
	if !checkKilled {
		return true
	}
	for _, id := range active {
		if s.store().killed(id) {
			return false
		}
	}
	return true
}

// room reports whether this node would take a task now: it accepts jobs
// and has a free core, or room for a task ahead.
func (s *Service) room() bool {
	if s.Accepting != nil {
		if ok, _ := s.Accepting(); !ok {
			return false
		}
	}
	cores, ahead := s.slots()
	s.mu.Lock()
	ahead -= len(s.waiting)
	s.mu.Unlock()
	return cores-s.Jobs.Load()+ahead > 0
}

// slots are this node's cores, and how many tasks it may start ahead.
func (s *Service) slots() (cores, ahead int) {
	cores = s.Cores
	if cores == 0 {
		cores = runtime.NumCPU()
	}
	switch {
	case s.Ahead == 0:
		ahead = 1
	case s.Ahead > 0:
		ahead = s.Ahead
	}
	if time.Now().UnixNano() < s.noAheadTill.Load() {
		ahead = 0
	}
	return cores, ahead
}

// look reads an array's record (once) and its tasks' names.
func (s *Service) look(id string) (*view, error) {
	st := s.store()
	s.mu.Lock()
	rec := s.records[id]
	s.mu.Unlock()
	if rec == nil {
		r, err := st.load(id)
		if err != nil {
			return nil, err
		}
		s.mu.Lock()
		s.records[id] = r
		s.mu.Unlock()
		rec = r
	}
	tasks, err := st.scan(rec)
	if err != nil {
		return nil, err
	}
	return &view{rec: rec, tasks: tasks, killed: st.killed(id)}, nil
}

// reap settles the running tasks whose runner is gone: a task of this
// node whose job ended without the wrapper's result gets one from the
// job's exit status; a task of a dead node whose job runs nowhere is lost,
// and queued again. On a killed array, this node stops its tasks. It
// reports whether it found a task whose state may differ from v's: a
// result or a loss written, by it or meanwhile by a wrapper.
//
// The claims of the tasks that other nodes run are read only when all
// says so (claimsDue, or a node has died since the last look): every
// node reading every task's claim at once cost the head, which answers
// all of them, in proportion to nodes times tasks.
func (s *Service) reap(ctx context.Context, v *view, alive map[string]bool, local map[string]api.JobInfo, ps **api.PSResult, all bool) (changed bool) {
	st := s.store()
	id := v.rec.ID
	if all {
		s.mu.Lock()
		if s.claimsRead == nil {
			s.claimsRead = map[string]time.Time{}
		}
		s.claimsRead[id] = time.Now()
		s.mu.Unlock()
	}
	for _, t := range v.tasks {
		if t.state(v.rec.Spec.Retries, v.killed) != api.TaskRunning {
			continue
		}
		a := t.last()
		if _, known := s.knownClaim(id, t.key, a.n); !known && !all {
			continue // another node's, and none has died
		}
		c, err := s.claim(id, t.key, a.n)
		if err != nil {
			// A claim not written yet: its node died between taking
			// it and starting its job, or is starting it now.
			if time.Since(s.claimedAt(id, t.key, a.n)) > time.Minute {
				st.lose(id, t.key, a.n, "claimed, never started")
				changed = true
			}
			continue
		}
		if j, ok := local[c.Job]; ok && c.Node != s.Self && j.Node == s.Self && j.State != api.JobExited {
			s.adopt(c.Job, id, t.key, a.n)
		}
		switch {
		case c.Node == s.Self:
			j, known := local[c.Job]
			if v.killed && known && j.State != api.JobExited && !s.signalled(c.Job) {
				if err := s.Agent.Signal(ctx, c.Job, int(syscall.SIGTERM)); err != nil {
					s.log().Warn("arrays: stop task", "array", id, "task", t.key, "job", c.Job, "err", err)
				}
			}
			switch {
			case c.Job == "" && time.Since(c.Started) > time.Minute:
				st.lose(id, t.key, a.n, "its job never started")
				changed = true
			case c.Job == "":
			case !known && time.Since(c.Started) > 30*time.Second:
				changed = true
				if !st.hasResult(id, t.key, a.n) {
					st.lose(id, t.key, a.n, "its job is gone from "+s.Self)
				}
			case known && j.State == api.JobExited:
				changed = true
				if st.hasResult(id, t.key, a.n) {
					continue
				}
				if j.Node != "" && !alive[j.Node] {
					// It had moved to a node that died (its home says
					// 255): lost with that node, not failed.
					st.lose(id, t.key, a.n, "node "+j.Node+" died")
					continue
				}
				time.Sleep(200 * time.Millisecond) // the wrapper's rename, seen late
				if st.hasResult(id, t.key, a.n) {
					continue
				}
				if marker := taskexec.WaitingMarker(st.attempt(id, t.key, a.n)); fileExists(marker) {
					// It ended while it waited for a core: it never ran.
					st.lose(id, t.key, a.n, "its job ended on "+s.Self+" while it waited for a core")
					taskexec.RemoveFile(marker)
					continue
				}
				code := 255
				if j.Exit != nil {
					code = *j.Exit
				}
				why := "the task's job ended before its wrapper wrote a result"
				taskexec.WriteResult(st.attempt(id, t.key, a.n), result{Exit: code, Node: j.Node, Started: c.Started, Ended: time.Now(), Error: why})
			}
		case !alive[c.Node]:
			changed = true
			if st.hasResult(id, t.key, a.n) {
				continue
			}
			if *ps == nil {
				got, err := s.Agent.PS(ctx)
				if err != nil {
					s.log().Warn("arrays: list jobs", "err", err)
					return changed
				}
				*ps = &got
			}
			if runsSomewhere(**ps, c.Job) {
				continue // its home died, it did not: its wrapper will write the result
			}
			s.log().Info("arrays: task lost with its node, queued again", "array", id, "task", t.key, "node", c.Node)
			st.lose(id, t.key, a.n, "node "+c.Node+" died")
		}
	}
	return changed
}

func (s *Service) signalled(job string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	was := s.killed[job]
	s.killed[job] = true
	return was
}

func runsSomewhere(ps api.PSResult, job string) bool {
	if job == "" {
		return false
	}
	for _, j := range ps.Jobs {
		if j.ID == job && j.State != api.JobExited {
			return true
		}
	}
	return false
}

func (s *Service) summaryWritten(id string) bool {
	b, err := os.ReadFile(filepath.Join(s.store().dir(id), "summary.json"))
	if err != nil {
		return false
	}
	var sum api.ArrayStatus
	if json.Unmarshal(b, &sum) != nil {
		return false
	}
	s.finished(id, sum.ArrayInfo)
	return true
}

// finished records that array id has ended and its summary is written,
// and forgets what was read of its tasks: a pool that runs sweep after
// sweep would otherwise keep every claim and result it ever read (the
// summary's writer reads them all).
func (s *Service) finished(id string, info api.ArrayInfo) {
	prefix := id + "/"
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done[id] = info
	delete(s.endSeen, id)
	delete(s.claimsRead, id)
	maps.DeleteFunc(s.results, func(k string, _ result) bool { return strings.HasPrefix(k, prefix) })
	maps.DeleteFunc(s.claims, func(k string, _ claim) bool { return strings.HasPrefix(k, prefix) })
	maps.DeleteFunc(s.claimTimes, func(k string, _ time.Time) bool { return strings.HasPrefix(k, prefix) })
}

// finish writes the summary of an array whose tasks have all ended, and
// reports whether it has: at a look, if this node is its writer
// (writesSummary); asked by a client, whichever node it is, so that the
// client finds the summary it is told of.
func (s *Service) finish(v *view, asked bool) bool {
	if !v.ended() {
		return false // before info, which reads every task's result
	}
	if !asked && !s.writesSummary(v) {
		return false
	}
	info := s.info(v)
	if !info.Finished() {
		return false
	}
	status := api.ArrayStatus{ArrayInfo: info, List: s.taskList(v)}
	dir := s.store().dir(v.rec.ID)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"task", "state", "node", "exit", "signal", "elapsed_s", "peak_rss_bytes", "attempts", "stdout", "error"})
	for _, t := range status.List {
		exit := ""
		if t.Exit != nil {
			exit = strconv.Itoa(*t.Exit)
		}
		w.Write([]string{t.Task, t.State, t.Node, exit, strconv.Itoa(t.Signal), strconv.FormatFloat(t.Elapsed, 'f', 1, 64),
			strconv.FormatUint(t.PeakRSS, 10), strconv.Itoa(t.Attempts), t.Stdout, t.Error})
	}
	w.Flush()
	if err := taskexec.WriteAtomic(filepath.Join(dir, "summary.csv"), buf.Bytes()); err != nil {
		s.log().Warn("arrays: summary", "array", v.rec.ID, "err", err)
		return true
	}
	b, _ := json.MarshalIndent(status, "", "  ")
	if err := taskexec.WriteAtomic(filepath.Join(dir, "summary.json"), b); err != nil {
		s.log().Warn("arrays: summary", "array", v.rec.ID, "err", err)
		return true
	}
	s.finished(v.rec.ID, info)
	s.log().Info("arrays: array finished", "array", v.rec.ID, "done", info.Done, "failed", info.Failed, "cancelled", info.Cancelled)
	return true
}

// claimsEvery is how often a node reads the claims of every running
// task, other nodes' too, when no node has died: for a task claimed by
// a node that died before this one looked (this node started later),
// and for a claim whose node died before it named its job.
const claimsEvery = 30 * time.Second

// claimsDue reports whether reap should read the claims of every running
// task of array id: at the first look, every claimsEvery, and when a job
// of one of its tasks has arrived here and is not yet known (its claim
// says which task it runs, and whether it waits for a core).
func (s *Service) claimsDue(id string, local map[string]api.JobInfo) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if at, ok := s.claimsRead[id]; !ok || time.Since(at) >= claimsEvery {
		return true
	}
	for _, j := range local {
		if j.Node != s.Self || j.State == api.JobExited || !strings.HasPrefix(j.Name, id+"/") {
			continue
		}
		if _, mine := s.started[j.ID]; !mine && !s.seen[j.ID] {
			return true
		}
	}
	return false
}

// knownClaim is the claim of attempt n of a task if it has been read
// (or written here) already.
func (s *Service) knownClaim(id, key string, n int) (claim, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.claims[attemptKey(id, key, n)]
	return c, ok
}

// claim reads the claim of attempt n of a task; once it names its job it
// changes no more, and is read once.
func (s *Service) claim(id, key string, n int) (claim, error) {
	if c, ok := s.knownClaim(id, key, n); ok {
		return c, nil
	}
	c, err := s.store().readClaim(id, key, n)
	if err != nil || c.Job == "" {
		return c, err
	}
	s.rememberClaim(id, key, n, c)
	return c, nil
}

// rememberClaim keeps the claim of attempt n of a task, which names its
// job and so changes no more.
func (s *Service) rememberClaim(id, key string, n int, c claim) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.claims == nil {
		s.claims = map[string]claim{}
	}
	s.claims[attemptKey(id, key, n)] = c
}

// attemptKey names attempt n of a task of array id in the service's
// caches: "ID/KEY.N".
func attemptKey(id, key string, n int) string {
	return id + "/" + key + "." + strconv.Itoa(n)
}

// claimedAt is when attempt n of a task was claimed (its claim's time),
// read once; zero if it cannot be read.
func (s *Service) claimedAt(id, key string, n int) time.Time {
	k := attemptKey(id, key, n)
	s.mu.Lock()
	at, ok := s.claimTimes[k]
	s.mu.Unlock()
	if ok {
		return at
	}
	fi, err := os.Stat(s.store().attempt(id, key, n))
	if err != nil {
		return time.Time{}
	}
	s.mu.Lock()
	if s.claimTimes == nil {
		s.claimTimes = map[string]time.Time{}
	}
	s.claimTimes[k] = fi.ModTime()
	s.mu.Unlock()
	return fi.ModTime()
}

// result reads (once) the result of attempt a of a task.
func (s *Service) result(id, key string, a attempt) (result, bool) {
	if !a.ok && !a.fail {
		return result{}, false
	}
	if r, ok := s.knownResult(id, key, a.n); ok {
		return r, true
	}
	r, err := s.store().readResult(id, key, a.n, a.ok)
	if err != nil {
		return result{}, false
	}
	s.mu.Lock()
	s.results[attemptKey(id, key, a.n)] = r
	s.mu.Unlock()
	return r, true
}

// need is the memory a task of the array is given room for: --mem, else
// 5/4 of the largest peak RSS of its ended tasks; 0 while none has ended.
func (s *Service) need(v *view) uint64 {
	if v.rec.Spec.Mem > 0 {
		return v.rec.Spec.Mem
	}
	var peak uint64
	learned := 0
	type ended struct {
		key string
		a   attempt
	}
	var own, others []ended
	for _, t := range v.tasks {
		for _, a := range t.attempts {
			if !a.ok && !a.fail {
				continue
			}
			if r, ok := s.knownResult(v.rec.ID, t.key, a.n); ok {
				learned++
				peak = max(peak, r.PeakRSS)
			} else if c, ok := s.knownClaim(v.rec.ID, t.key, a.n); ok && c.Node == s.Self {
				own = append(own, ended{t.key, a})
			} else {
				others = append(others, ended{t.key, a})
			}
		}
	}
	// The results of this node's own tasks, and others' only until
	// learnFrom are known: every node reading every task's result cost
	// the head, which answers all of them, in proportion to nodes times
	// tasks.
	for i, e := range append(own, others...) {
		if i >= len(own) && learned >= learnFrom {
			break
		}
		if r, ok := s.result(v.rec.ID, e.key, e.a); ok {
			learned++
			peak = max(peak, r.PeakRSS)
		}
	}
	return peak + peak/4
}

// learnFrom is how many ended tasks' results a node reads, besides those
// of its own tasks, to learn the memory a task of an array needs and how
// long one runs.
const learnFrom = 3

// knownResult is the result of attempt n of a task if it has been read.
func (s *Service) knownResult(id, key string, n int) (result, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.results[attemptKey(id, key, n)]
	return r, ok
}

// takeTasks claims and starts the queued tasks this node has room for:
// a free core each (and Ahead more), and the memory the task needs,
// lower nice first.
func (s *Service) takeTasks(ctx context.Context, active []*view) {
	if s.Accepting != nil {
		if ok, _ := s.Accepting(); !ok {
			return
		}
	}
	cores, ahead := s.slots()
	free := cores - s.Jobs.Load() // the waiting tasks are not in Load
	s.mu.Lock()
	ahead -= len(s.waiting)
	s.mu.Unlock()
	if free+ahead <= 0 || len(active) == 0 {
		return
	}
	sort.SliceStable(active, func(i, j int) bool {
		a, b := active[i].rec, active[j].rec
		if a.Spec.Nice != b.Spec.Nice {
			return a.Spec.Nice < b.Spec.Nice
		}
		return a.Submitted.Before(b.Submitted)
	})
	// Memory the tasks running here will still take: what each needs
	// beyond what it holds now (the look had no memory use: it costs
	// reads of /proc, made only when a task may be taken).
	local := map[string]api.JobInfo{}
	for _, j := range s.Jobs.Local() {
		local[j.ID] = j
	}
	var growth uint64
	mine := map[string]int{} // tasks of each array running here
	for _, v := range active {
		need := s.need(v)
		for _, t := range v.tasks {
			if t.state(v.rec.Spec.Retries, v.killed) != api.TaskRunning {
				continue
			}
			// This node's tasks: their claims are known (start,
			// reap).
			c, ok := s.knownClaim(v.rec.ID, t.key, t.last().n)
			if !ok || c.Node != s.Self {
				continue
			}
			mine[v.rec.ID]++
			if j, ok := local[c.Job]; ok && j.Node == s.Self && j.RSS < need {
				growth += need - j.RSS
			} else if !ok {
				growth += need
			}
		}
	}
	reserve := s.Reserve
	if reserve == 0 {
		reserve = 64 << 20
	}
	aliveN := len(s.Alive())
	for _, v := range active {
		if v.killed {
			continue
		}
		spec := v.rec.Spec
		running := v.count(api.TaskRunning)
		need := s.need(v)
		for _, t := range v.tasks {
			if free+ahead <= 0 {
				return
			}
			if spec.MaxRunning > 0 && running >= spec.MaxRunning {
				break
			}
			if t.state(spec.Retries, v.killed) != api.TaskQueued {
				continue
			}
			if need == 0 && mine[v.rec.ID] > 0 && free > 0 {
				// The first task here tells how much memory they need.
				// One may still wait ahead of it for its core (every
				// core is taken): waiting, it runs nothing, and it runs
				// only once a task here has ended.
				break
			}
			// A node with no job at all gives a task the memory it has:
			// else tasks larger than the reserve allows would wait for ever.
			margin := reserve + growth
			if s.Jobs.Load() == 0 && mine[v.rec.ID] == 0 {
				margin = 0
			}
			if avail := s.memAvailable(); avail < margin+need {
				s.log().Debug("arrays: no memory for a task", "array", v.rec.ID, "available", avail, "need", need, "growth", growth)
				return
			}
			if l := t.last(); l != nil && l.fail && aliveN > 1 {
				if r, ok := s.result(v.rec.ID, t.key, *l); ok && r.Node == s.Self && time.Since(r.Ended) < time.Minute {
					continue // a retry goes to another node, if one takes it within a minute
				}
			}
			if l := t.last(); l != nil && l.lost && free <= 0 {
				// Given back, or lost with its node: it goes to a node
				// with a free core, not to wait here again.
				continue
			}
			hold := free <= 0 // every core is taken: this one waits its turn
			if hold && spec.MaxRunning > 0 {
				break // a task held here would count against the cap while another node idles
			}
			n := t.next()
			f, got, err := s.store().take(v.rec.ID, t.key, n)
			if err != nil {
				s.log().Warn("arrays: claim", "array", v.rec.ID, "task", t.key, "err", err)
				return
			}
			if !got {
				continue
			}
			if hold {
				if err := s.store().markWaiting(v.rec.ID, t.key, n); err != nil {
					s.log().Warn("arrays: mark a task started ahead", "array", v.rec.ID, "task", t.key, "err", err)
				}
			}
			if err := s.start(ctx, v.rec, t.key, n, hold, f); err != nil {
				s.log().Warn("arrays: start task", "array", v.rec.ID, "task", t.key, "err", err)
				s.store().lose(v.rec.ID, t.key, n, "start on "+s.Self+": "+err.Error())
				return
			}
			if hold {
				ahead--
			} else {
				free--
			}
			running++
			mine[v.rec.ID]++
			growth += need
		}
	}
}

// adopt counts a task's job here as waiting for a core: one started
// ahead here, or one that moved here while it waited (its wrapper keeps
// the file KEY.A.waiting meanwhile; that is looked for once per job).
func (s *Service) adopt(job, array, key string, n int) {
	s.mu.Lock()
	_, mine := s.started[job]
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	looked := s.seen[job]
	s.seen[job] = true
	s.mu.Unlock()
	if looked {
		return
	}
	if !mine { // it arrived here: is it waiting?
		if _, err := os.Stat(taskexec.WaitingMarker(s.store().attempt(array, key, n))); err != nil {
			return
		}
	}
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting = map[string]waitRef{}
	}
	s.waiting[job] = waitRef{array: array, key: key, n: n, at: time.Now()}
	s.mu.Unlock()
	s.Jobs.SetWaiting(job, true)
}

// release lets the tasks waiting here run, oldest first, while this node
// has a free core; local are the jobs here. A task whose wrapper does not
// yet catch SIGUSR2 (its process is still starting) is let run at a later
// look: the signal would end it.
func (s *Service) release(ctx context.Context, local map[string]api.JobInfo) {
	s.mu.Lock()
	var ws []string
	for job := range s.waiting {
		if j, ok := local[job]; !ok || j.State == api.JobExited || j.Node != s.Self {
			delete(s.waiting, job) // ended, or gone elsewhere
			continue
		}
		ws = append(ws, job)
	}
	for job := range s.seen {
		if _, ok := local[job]; !ok {
			delete(s.seen, job)
		}
	}
	sort.Slice(ws, func(i, j int) bool { return s.waiting[ws[i]].at.Before(s.waiting[ws[j]].at) })
	s.mu.Unlock()
	cores, _ := s.slots()
	for _, job := range ws {
		if s.Jobs.Load() >= cores {
			return
		}
		s.mu.Lock()
		w := s.waiting[job]
		s.mu.Unlock()
		if !waitsItsTurn(local[job].PID) {
			continue
		}
		if err := s.Agent.Signal(ctx, job, int(syscall.SIGUSR2)); err != nil {
			s.log().Warn("arrays: let a waiting task run", "array", w.array, "task", w.key, "job", job, "err", err)
			continue
		}
		// Ready no longer: its wrapper removes the marker too, but only
		// once it has the signal, and until then drift ps would count it
		// ready beside the task this node takes ahead next.
		taskexec.RemoveFile(taskexec.WaitingMarker(s.store().attempt(w.array, w.key, w.n)))
		s.mu.Lock()
		delete(s.waiting, job)
		if t, ok := s.started[job]; ok {
			t.at = time.Now()
			s.started[job] = t
		}
		s.mu.Unlock()
		s.Jobs.SetWaiting(job, false)
		s.log().Info("arrays: task started", "array", w.array, "task", w.key, "attempt", w.n, "job", job)
	}
}

// Remaining is how much longer the task that job runs is expected to
// run, if it is a task started here and tasks of its array have ended:
// the median run time of those that succeeded less the time it has run
// (at least a second). 0: not known. The tasks of a sweep are alike, so
// the balancer weighs this, rather than a job's age, when it considers
// moving one to a node that has run out of tasks.
func (s *Service) Remaining(job string, now time.Time) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.started[job]
	if !ok {
		return 0
	}
	var took []time.Duration
	for k, r := range s.results {
		if strings.HasPrefix(k, t.array+"/") && r.Exit == 0 && r.Error == "" && r.Ended.After(r.Started) {
			took = append(took, r.Ended.Sub(r.Started))
		}
	}
	if len(took) == 0 {
		return 0
	}
	slices.Sort(took)
	return max(took[len(took)/2]-now.Sub(t.at), time.Second)
}

// overdue reports whether the task that job runs has run half as long
// again as its array's median: the tasks are not alike, and it may run
// much longer than Remaining says.
func (s *Service) overdue(job string, now time.Time) bool {
	s.mu.Lock()
	t, ok := s.started[job]
	s.mu.Unlock()
	if !ok {
		return false
	}
	median := s.Remaining(job, t.at) // at its start: the median itself
	return median > 0 && now.Sub(t.at) > median*3/2
}

// start runs attempt n of a task as a job on this node and writes its
// claim, f, which take made (and which start closes).
func (s *Service) start(ctx context.Context, rec *record, key string, n int, hold bool, f *os.File) error {
	st := s.store()
	argv, err := expand(rec.Spec, key)
	if err != nil {
		f.Close()
		return err
	}
	out, errPath := outputPaths(rec, st.dir(rec.ID), key, s.sharedRoot())
	wrapper := s.TaskCmd
	if wrapper == nil {
		wrapper = jobinit.Command(TaskArg, "/bin/driftd")
	}
	cmd := append(append([]string(nil), wrapper...), "--out", out, "--err", errPath, "--result", st.attempt(rec.ID, key, n))
	if rec.Spec.Nice > 0 {
		cmd = append(cmd, "--idle")
	}
	if hold {
		cmd = append(cmd, "--hold")
	}
	if rec.Spec.Dir != "" {
		cmd = append(cmd, "--dir", rec.Spec.Dir) // task.go says why not JobSpec.Dir
	}
	cmd = append(append(cmd, "--"), argv...)
	env := append(append([]string(nil), rec.Spec.Env...), "DRIFT_ARRAY="+rec.ID, "DRIFT_TASK="+key, "DRIFT_TASK_ATTEMPT="+strconv.Itoa(n))
	started := time.Now()
	// No checkpoints: when its node dies, the queue runs the task again
	// (a recovery from a checkpoint as well would run it twice).
	info, err := s.Agent.RunDetached(ctx, api.JobSpec{Argv: cmd, Env: env, Name: rec.ID + "/" + key, Node: s.Self, CheckpointEvery: -1, Waiting: hold})
	if err != nil {
		f.Close()
		return err
	}
	c := claim{Node: s.Self, Job: info.ID, Started: started}
	if err := writeClaim(f, c); err != nil {
		return err
	}
	s.rememberClaim(rec.ID, key, n, c)
	s.mu.Lock()
	if s.started == nil {
		s.started = map[string]taskRef{}
	}
	for job, t := range s.started { // forget the tasks of finished arrays
		if _, done := s.done[t.array]; done {
			delete(s.started, job)
		}
	}
	s.started[info.ID] = taskRef{array: rec.ID, at: started}
	s.mu.Unlock()
	if hold {
		s.adopt(info.ID, rec.ID, key, n)
		s.log().Info("arrays: task started ahead, waiting for a core", "array", rec.ID, "task", key, "attempt", n, "job", info.ID)
		return nil
	}
	s.log().Info("arrays: task started", "array", rec.ID, "task", key, "attempt", n, "job", info.ID)
	return nil
}

// expand substitutes a task's index or line into the command: {} is the
// whole of it, {1} {2}... its whitespace-separated fields.
func expand(spec api.ArraySpec, key string) ([]string, error) {
	value := key
	if len(spec.Lines) > 0 {
		i, _ := strconv.Atoi(key)
		if i < 1 || i > len(spec.Lines) {
			return nil, fmt.Errorf("task %s: no such line", key)
		}
		value = spec.Lines[i-1]
	}
	fields := strings.Fields(value)
	out := make([]string, len(spec.Argv))
	for i, arg := range spec.Argv {
		a, err := substitute(arg, value, fields)
		if err != nil {
			return nil, fmt.Errorf("task %s: %w", key, err)
		}
		out[i] = a
	}
	return out, nil
}

func substitute(arg, value string, fields []string) (string, error) {
	var b strings.Builder
	for {
		i := strings.IndexByte(arg, '{')
		if i < 0 {
			b.WriteString(arg)
			return b.String(), nil
		}
		b.WriteString(arg[:i])
		j := strings.IndexByte(arg[i:], '}')
		inner := ""
		if j > 0 {
			inner = arg[i+1 : i+j]
		}
		n, err := strconv.Atoi(inner)
		switch {
		case j > 0 && inner == "":
			b.WriteString(value)
		case j > 0 && err == nil && n >= 1 && strings.Trim(inner, "0123456789") == "":
			if n > len(fields) {
				return "", fmt.Errorf("{%d}: the line %q has %d field(s)", n, value, len(fields))
			}
			b.WriteString(fields[n-1])
		default: // not ours ("{ cmd; }", "${x}"): left as written
			b.WriteByte('{')
			arg = arg[i+1:]
			continue
		}
		arg = arg[i+j+1:]
	}
}

// outputPaths are where a task's stdout and stderr go.
func outputPaths(rec *record, dir, key, sharedRoot string) (string, string) {
	if rec.Spec.Output == "" {
		return filepath.Join(dir, key+".out"), filepath.Join(dir, key+".err")
	}
	out := strings.ReplaceAll(rec.Spec.Output, "{}", key)
	if !filepath.IsAbs(out) {
		base := rec.Spec.Dir
		if base == "" {
			base = sharedRoot
		}
		out = filepath.Join(base, out)
	}
	return out, out + ".err"
}

func (s *Service) memAvailable() uint64 {
	if s.MemAvailable != nil {
		return s.MemAvailable()
	}
	return meminfoAvailable()
}

// meminfoAvailable is MemAvailable from /proc/meminfo, in bytes.
func meminfoAvailable() uint64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemAvailable:"); ok {
			var kb uint64
			fmt.Sscan(rest, &kb)
			return kb << 10
		}
	}
	return 0
}

// info counts an array's tasks.
func (s *Service) info(v *view) api.ArrayInfo {
	r := v.rec
	name := r.Spec.Name
	if name == "" && len(r.Spec.Argv) > 0 {
		name = filepath.Base(r.Spec.Argv[0])
	}
	info := api.ArrayInfo{ID: r.ID, Name: name, Node: r.Node, Submitted: r.Submitted, Argv: r.Spec.Argv,
		Dir: s.store().dir(r.ID), Nice: r.Spec.Nice, Mem: s.need(v), Tasks: len(v.tasks), Killed: v.killed}
	var last time.Time
	for _, t := range v.tasks {
		switch t.state(r.Spec.Retries, v.killed) {
		case api.TaskQueued:
			info.Queued++
		case api.TaskRunning:
			if l := t.last(); l != nil && l.waiting {
				info.Ready++
			} else {
				info.Running++
			}
		case api.TaskDone:
			info.Done++
		case api.TaskFailed:
			info.Failed++
		case api.TaskCancelled:
			info.Cancelled++
		}
		for _, a := range t.attempts {
			if res, ok := s.result(r.ID, t.key, a); ok {
				if info.Started.IsZero() || res.Started.Before(info.Started) {
					info.Started = res.Started
				}
				if res.Ended.After(last) {
					last = res.Ended
				}
			} else if at := s.claimedAt(r.ID, t.key, a.n); a.claimed && !at.IsZero() && (info.Started.IsZero() || at.Before(info.Started)) {
				info.Started = at
			}
		}
	}
	if info.Finished() {
		info.Ended = last
	}
	return info
}

// taskList describes each task of an array.
func (s *Service) taskList(v *view) []api.TaskInfo {
	st := s.store()
	out := make([]api.TaskInfo, 0, len(v.tasks))
	for _, t := range v.tasks {
		ti := api.TaskInfo{Task: t.key, State: t.state(v.rec.Spec.Retries, v.killed)}
		if l := t.last(); ti.State == api.TaskRunning && l != nil && l.waiting {
			ti.State = api.TaskReady
		}
		ti.Stdout, ti.Stderr = outputPaths(v.rec, st.dir(v.rec.ID), t.key, s.sharedRoot())
		for _, a := range t.attempts {
			if a.claimed {
				ti.Attempts++
			}
		}
		// The attempt that decided the state: the successful one, else the last.
		var a *attempt
		for i := range t.attempts {
			if t.attempts[i].ok {
				a = &t.attempts[i]
			}
		}
		if a == nil {
			a = t.last()
		}
		if a != nil {
			if r, ok := s.result(v.rec.ID, t.key, *a); ok {
				exit := r.Exit
				ti.Exit, ti.Signal, ti.Node, ti.Started, ti.Ended, ti.PeakRSS, ti.Error = &exit, r.Signal, r.Node, r.Started, r.Ended, r.PeakRSS, r.Error
				ti.Elapsed = r.Ended.Sub(r.Started).Seconds()
			} else if c, err := s.claim(v.rec.ID, t.key, a.n); err == nil {
				ti.Node, ti.Started = c.Node, c.Started
				if ti.State == api.TaskRunning || ti.State == api.TaskReady {
					ti.Job = c.Job
					ti.Elapsed = time.Since(c.Started).Seconds()
				}
			}
		}
		out = append(out, ti)
	}
	return out
}

// ErrNoArray is returned for an array id that is not in the queue.
var ErrNoArray = errors.New("no such array")

// Array returns an array's counts.
func (s *Service) Array(id string) (api.ArrayInfo, error) {
	s.init()
	s.mu.Lock()
	info, ok := s.done[id]
	s.mu.Unlock()
	if ok {
		return info, nil
	}
	v, err := s.look(id)
	if errors.Is(err, fs.ErrNotExist) {
		return api.ArrayInfo{}, fmt.Errorf("%w %s (drift ps lists them)", ErrNoArray, id)
	}
	if err != nil {
		return api.ArrayInfo{}, err
	}
	info = s.info(v)
	if info.Finished() && !s.summaryWritten(id) {
		// Whoever is told the array has ended finds its summary: write
		// it now rather than at a node's next look.
		s.finish(v, true)
	}
	return info, nil
}

// Tasks returns an array with each of its tasks.
func (s *Service) Tasks(id string) (api.ArrayStatus, error) {
	s.init()
	if b, err := os.ReadFile(filepath.Join(s.store().dir(id), "summary.json")); err == nil {
		var sum api.ArrayStatus
		if json.Unmarshal(b, &sum) == nil {
			return sum, nil
		}
	}
	v, err := s.look(id)
	if errors.Is(err, fs.ErrNotExist) {
		return api.ArrayStatus{}, fmt.Errorf("%w %s (drift ps lists them)", ErrNoArray, id)
	}
	if err != nil {
		return api.ArrayStatus{}, err
	}
	return api.ArrayStatus{ArrayInfo: s.info(v), List: s.taskList(v)}, nil
}

// List returns every array, oldest first.
func (s *Service) List() ([]api.ArrayInfo, error) {
	s.init()
	ids, err := s.store().ids()
	if err != nil {
		return nil, err
	}
	var out []api.ArrayInfo
	for _, id := range ids {
		info, err := s.Array(id)
		if err != nil {
			continue
		}
		out = append(out, info)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Submitted.Before(out[j].Submitted) })
	return out, nil
}

// Submit validates an array and queues it.
func (s *Service) Submit(spec api.ArraySpec) (api.ArrayInfo, error) {
	s.init()
	if err := Validate(spec, s.sharedRoot()); err != nil {
		return api.ArrayInfo{}, err
	}
	if s.Shared != nil && !s.Shared() {
		return api.ArrayInfo{}, fmt.Errorf("the shared storage is not mounted on %s, and the queue lives there (drift storage says why)", s.Self)
	}
	rec, err := s.store().create(s.Self, spec, time.Now())
	if err != nil {
		return api.ArrayInfo{}, err
	}
	s.log().Info("arrays: array submitted", "array", rec.ID, "tasks", len(rec.keys()), "argv", spec.Argv)
	s.poke()
	s.tellOthers()
	return s.Array(rec.ID)
}

// Kill stops an array: nothing more starts, and each node stops the
// tasks it runs.
func (s *Service) Kill(id string) (api.ArrayInfo, error) {
	s.init()
	if _, err := s.Array(id); err != nil {
		return api.ArrayInfo{}, err
	}
	if err := s.store().kill(id); err != nil {
		return api.ArrayInfo{}, err
	}
	s.mu.Lock()
	delete(s.done, id)
	s.mu.Unlock()
	s.lookNow()
	s.tellOthers()
	return s.Array(id)
}

func (s *Service) sharedRoot() string {
	if s.SharedRoot != "" {
		return s.SharedRoot
	}
	return api.SharedRoot
}

// Validate says what is wrong with a spec, in words a user can act on.
func Validate(spec api.ArraySpec, sharedRoot string) error {
	switch {
	case len(spec.Argv) == 0:
		return errors.New("no command: drift run --array 1-10 -- CMD ARGS...")
	case spec.Range == "" && len(spec.Lines) == 0:
		return errors.New("no tasks: give --array FIRST-LAST or --array-file F (with at least one line)")
	case spec.Range != "" && len(spec.Lines) > 0:
		return errors.New("--array and --array-file together: give one of them")
	case spec.Nice < 0 || spec.Nice > 19:
		return fmt.Errorf("--nice %d: want 0 (first) to 19 (last)", spec.Nice)
	case spec.Retries < 0 || spec.Retries > 100:
		return fmt.Errorf("--retries %d: want 0 to 100", spec.Retries)
	case spec.MaxRunning < 0:
		return fmt.Errorf("--max-running %d: want 1 or more (0: no limit)", spec.MaxRunning)
	case len(spec.Lines) > api.MaxTasks:
		return fmt.Errorf("%d lines: over the limit of %d tasks; split the file", len(spec.Lines), api.MaxTasks)
	}
	if spec.Range != "" {
		if _, err := api.ParseRange(spec.Range); err != nil {
			return err
		}
	}
	if o := spec.Output; o != "" {
		if !strings.Contains(o, "{}") {
			return fmt.Errorf("--output %q: the pattern needs {} (the task's index), or every task writes the same file", o)
		}
		if filepath.IsAbs(o) && o != sharedRoot && !strings.HasPrefix(filepath.Clean(o), sharedRoot+"/") {
			return fmt.Errorf("--output %q: outputs go under %s, where every node can write them", o, sharedRoot)
		}
	}
	for i, line := range spec.Lines {
		fields := strings.Fields(line)
		for _, arg := range spec.Argv {
			if _, err := substitute(arg, line, fields); err != nil {
				return fmt.Errorf("line %d: %w", i+1, err)
			}
		}
	}
	return nil
}
