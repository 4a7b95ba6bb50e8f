package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
)

// The target's side of a migration: admission (the node's room and CPU),
// the images, the restore as the job's next stint, and the node's load
// that admissions and runners make up.

// incomingTTL bounds how long an admitted migration counts as arriving.
const incomingTTL = 2 * time.Minute

// arriving is a migration admitted here and not yet restored.
type arriving struct {
	at   time.Time
	sink *remoteSink // the next stint's stream to its home, opened at admission; nil: the home is this node
}

// handleAdmit opens a migration to this node: it refuses when the node
// takes no jobs (409), when its CPU cannot run what the job may use on
// the source (422), or when it runs or receives more jobs than the source
// counted (409). Admitted, the job counts in the node's load, and its
// stint's stream to the home is opened now, not while it is frozen.
func (m *Manager) handleAdmit(w http.ResponseWriter, r *http.Request) {
	m.init()
	if ok, why := m.accepting(); !ok {
		http.Error(w, why, http.StatusConflict)
		return
	}
	var req api.AdmitRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "admit: want an AdmitRequest", http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	if req.CPUInfo != nil {
		if err := m.mig.CheckCPU(r.Context(), req.CPUInfo); err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, migrate.ErrCPUIncompatible) {
				code = http.StatusUnprocessableEntity // lasting, unlike a busy node's 409
			}
			http.Error(w, fmt.Sprintf("%s cannot run it: %v", m.Self, err), code)
			return
		}
	}
	// Room first: a busy node refuses without opening anything.
	if !m.admit(id, req.Expect, nil) {
		http.Error(w, fmt.Sprintf("%s is busier than the source counted (%d jobs running or arriving, it counted %d): try again later", m.Self, m.load(), *req.Expect), http.StatusConflict)
		return
	}
	if req.Home != m.Self && req.Home != "" {
		s, err := m.dialStint(r.Context(), req.Home, id, req.Epoch)
		if err != nil {
			m.arrived(id)
			http.Error(w, fmt.Sprintf("%s cannot reach the job's home: %v", m.Self, err), http.StatusBadGateway)
			return
		}
		s.hello.Reason = req.Reason
		if !m.arrivingStream(id, s) {
			s.fc.Close()
			http.Error(w, "admit "+id+": the migration was discarded meanwhile", http.StatusConflict)
			return
		}
	}
	api.WriteJSON(w, api.AdmitResult{OK: true, Load: m.load()})
}

func (m *Manager) handleImages(w http.ResponseWriter, r *http.Request) {
	if err := m.target().Receive(r.Context(), r.PathValue("id"), r.PathValue("name"), r.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	api.WriteJSON(w, map[string]bool{"ok": true})
}

func (m *Manager) handleDiscard(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if rs := m.arrived(id); rs != nil {
		rs.fc.Close()
	}
	if hd := m.takeHeld(id, nil); hd != nil { // its CRIU kills the copy, then the images go
		hd.verdict <- errHoldDiscarded
		<-hd.done
	} else {
		m.target().Discard(id)
	}
	api.WriteJSON(w, map[string]bool{"ok": true})
}

func (m *Manager) target() *migrate.Target {
	m.init()
	os.MkdirAll(m.workDir(), 0o700)
	return m.mig.Target()
}

// held is a job restored here and held stopped until its source says it
// may run (handleCommit) or must not (handleDiscard, or HoldTimeout).
type held struct {
	verdict chan error    // nil: run it; an error: kill it
	done    chan struct{} // closed once CRIU has returned
	pid     int           // after done: the job's root task
	err     error         // after done: why it does not run
	run     func() error  // after a nil verdict: makes it this node's next stint
}

// errHoldDiscarded is the verdict of a discarded migration.
var errHoldDiscarded = errors.New("the source discarded the migration")

// handleRestore restores a job from the images received, with fresh
// stdio pipes in place of the source's, and holds it stopped: it answers
// once the job is held, and the job runs only on handleCommit.
func (m *Manager) handleRestore(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var req api.RestoreRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, "restore: want a restore request", http.StatusBadRequest)
		return
	}
	t := m.target()
	rs := m.arrived(id) // the stint stream opened at admission
	var s sink
	var started func(*runner)
	if req.Home == m.Self {
		h, _, err := m.homeOf(id)
		if err != nil || h == nil {
			t.Discard(id)
			http.Error(w, fmt.Sprintf("restore %s: no such job homed here", id), http.StatusNotFound)
			return
		}
		s = localSink{h, req.Epoch}
		started = func(rn *runner) { h.runsOn(req.Epoch, m.Self, rn.pid, rn.control, req.Reason) }
	} else {
		if rs == nil { // admitted so long ago that its record expired
			var err error
			if rs, err = m.dialStint(r.Context(), req.Home, id, req.Epoch); err != nil {
				t.Discard(id)
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			rs.hello.Reason = req.Reason
		}
		s, started = rs, rs.attach
	}
	if req.Checkpoint != "" { // a recovery: the images are on the shared storage
		if ok, why := m.accepting(); !ok {
			t.Discard(id)
			http.Error(w, why, http.StatusConflict)
			return
		}
		err := m.checkpointPath(id, req.Checkpoint)
		if err == nil {
			err = t.Fetch(req.Checkpoint, id)
		}
		if err != nil {
			t.Discard(id)
			if rs != nil {
				rs.fc.Close()
			}
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	p, err := newPipes()
	if err != nil {
		t.Discard(id)
		if rs != nil {
			rs.fc.Close()
		}
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	hd := &held{verdict: make(chan error, 1), done: make(chan struct{})}
	hd.run = func() error {
		rn := newRunner(id, req.Epoch, hd.pid, p, waitPID(hd.pid), s, m.log())
		rn.spec, rn.home = req.Spec, req.Home
		rn.feedStdin(req.Stdin, req.StdinEOF) // before the home's frames, which wait for it
		m.adopt(id, rn)
		started(rn)
		return nil
	}
	isHeld := make(chan struct{})
	heldPid := 0
	m.tasks.Go(func() {
		defer t.Discard(id)
		pid, err := t.Restore(context.WithoutCancel(r.Context()), id,
			migrate.StdioInherit(req.Stdio, [3]*os.File{p.jobIn, p.jobOut, p.jobErr}),
			func(pid int) error {
				heldPid = pid
				m.log().Info("restored and held: it runs once its source commits", "job", id, "pid", pid)
				close(isHeld)
				select {
				case v := <-hd.verdict:
					return v
				case <-time.After(migrate.HoldTimeout):
					m.log().Warn("migration: the source never said whether the job may run; its copy here is killed", "job", id)
					return errors.New("no word from the source")
				}
			})
		hd.pid, hd.err = pid, err
		if err != nil {
			if heldPid > 0 { // CRIU killed the copy it held, our child: reap it
				waitPID(heldPid)()
			}
			m.takeHeld(id, hd)
			p.closeAll()
			if rs != nil {
				rs.fc.Close()
			}
		}
		close(hd.done)
	})
	m.mu.Lock()
	if m.held == nil {
		m.held = map[string]*held{}
	}
	m.held[id] = hd
	m.mu.Unlock()
	m.loadChanged()
	select {
	case <-isHeld:
		api.WriteJSON(w, map[string]bool{"held": true})
	case <-hd.done:
		http.Error(w, hd.err.Error(), http.StatusInternalServerError)
	}
}

// takeHeld removes id's held job, if it is hd (nil: whichever), and
// returns it.
func (m *Manager) takeHeld(id string, hd *held) *held {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.held[id]
	if cur == nil || (hd != nil && cur != hd) {
		return nil
	}
	delete(m.held, id)
	return cur
}

// handleCommit lets a held job run: its source's copy is gone. A commit
// that is asked again once the job runs answers the same.
func (m *Manager) handleCommit(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	hd := m.takeHeld(id, nil)
	if hd == nil {
		if m.runnerOf(id) != nil {
			api.WriteJSON(w, map[string]bool{"running": true})
			return
		}
		http.Error(w, "commit "+id+": no restored copy of it is held here", http.StatusNotFound)
		return
	}
	hd.verdict <- nil
	<-hd.done
	if hd.err != nil {
		m.log().Error("migration: the restored job failed as it was let run", "job", id, "err", hd.err)
		http.Error(w, fmt.Sprintf("commit %s: %v", id, hd.err), http.StatusInternalServerError)
		return
	}
	hd.run()
	m.loadChanged()
	api.WriteJSON(w, map[string]bool{"running": true})
}

// adopt records a runner and forgets it when its stint ends.
func (m *Manager) adopt(id string, r *runner) {
	m.mu.Lock()
	m.runners[id] = r
	if r.spec.Waiting && r.epoch == 1 { // counted in no load from its start
		if m.waiting == nil {
			m.waiting = map[string]bool{}
		}
		m.waiting[id] = true
	}
	m.mu.Unlock()
	m.loadChanged()
	m.tasks.Go(func() { m.checkpoints(r) })
	m.tasks.Go(func() {
		<-r.done
		m.mu.Lock()
		if m.runners[id] == r {
			delete(m.runners, id)
			delete(m.waiting, id)
		}
		m.mu.Unlock()
		m.psMeter.forget(r.pid)
		m.balMeter.forget(r.pid)
		m.loadChanged()
	})
}

// load is the number of jobs running here or admitted and on their way,
// less those that wait for a core.
func (m *Manager) load() int {
	m.mu.Lock()
	n := len(m.runners) + len(m.held) - len(m.waiting)
	var expired []*remoteSink
	for id, a := range m.incoming {
		if time.Since(a.at) > incomingTTL {
			delete(m.incoming, id)
			if a.sink != nil {
				expired = append(expired, a.sink)
			}
			continue
		}
		n++
	}
	m.mu.Unlock()
	for _, s := range expired { // outside the lock: closing may wait on the network
		s.fc.Close()
	}
	return n
}

// admit records an arriving job and its stint's stream, unless expect is
// set and this node already runs or receives more jobs than that.
func (m *Manager) admit(id string, expect *int, sink *remoteSink) bool {
	if expect != nil && m.load() > *expect {
		return false
	}
	m.mu.Lock()
	if m.incoming == nil {
		m.incoming = map[string]arriving{}
	}
	old := m.incoming[id]
	m.incoming[id] = arriving{at: time.Now(), sink: sink}
	m.mu.Unlock()
	if old.sink != nil { // an earlier admission of the same job, abandoned
		old.sink.fc.Close()
	}
	m.loadChanged()
	return true
}

// arrivingStream records the stint stream of an admitted job; false if
// the admission is gone (discarded meanwhile).
func (m *Manager) arrivingStream(id string, s *remoteSink) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.incoming[id]
	if !ok {
		return false
	}
	a.sink = s
	m.incoming[id] = a
	return true
}

// arrived forgets an admitted job, restored (now a runner) or abandoned,
// and returns its stint's stream: the caller uses it or closes it.
func (m *Manager) arrived(id string) *remoteSink {
	m.mu.Lock()
	a := m.incoming[id]
	delete(m.incoming, id)
	m.mu.Unlock()
	m.loadChanged()
	return a.sink
}
