package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

// Stints: the node that runs a job starts it (startLocal, or handleStart
// for a home elsewhere) and streams its output to the home (remoteSink),
// whose end is handleStint.

// startRemote asks node to run the first stint of job id, homed here.
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
	ended atomic.Bool // the stint has ended: its stream closes
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
	s.m.tasks.Go(func() { // until the stint's stream closes, when the stint ends
		for {
			f, err := s.fc.Read()
			if err != nil {
				if !s.ended.Load() && r.out() == s && !r.moved.Load() {
					s.m.homeLost(r, err)
				}
				return
			}
			r.control(f)
		}
	})
}

func (s *remoteSink) output(t byte, data []byte) error { return s.fc.Write(t, data) }

func (s *remoteSink) end(exit *api.ExitStatus, ho handOver) error {
	s.ended.Store(true)
	defer s.fc.Close()
	if exit == nil {
		b, _ := json.Marshal(ho)
		return s.fc.Write(FrameMoved, b)
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
	ctx, done := m.streamContext(r)
	defer done()
	stop := context.AfterFunc(ctx, func() { fc.Close() })
	defer stop()
	go func() { // a job ended here (its node declared dead) hangs up on its stint
		select {
		case <-h.exited:
			fc.Close()
		case <-ctx.Done():
		}
	}()
	started := false // a stint opened for a migration that failed ends before it starts: nothing ran
	for {
		f, err := fc.Read()
		if err != nil {
			if started && m.base.Err() == nil && h.current(hello.Epoch) && m.recover(id, h, hello.Node, true) {
				return // started again from its checkpoint
			}
			if started && h.streamLost(hello.Epoch, hello.Node, err) {
				m.log().Warn("the stream of a stint broke after the job had moved on: output it had not sent is lost", "job", id, "node", hello.Node, "err", err)
			}
			return
		}
		switch f.Type {
		case api.FrameInfo:
			started = true
			var hi api.StintHello
			json.Unmarshal(f.Data, &hi)
			h.runsOn(hello.Epoch, hi.Node, hi.PID, func(c api.Frame) { fc.Write(c.Type, c.Data) }, hi.Reason)
		case api.FrameStdout, api.FrameStderr, api.FrameCheckpoint:
			h.output(hello.Epoch, f.Type, f.Data)
		case FrameMoved:
			var ho handOver
			ok := json.Unmarshal(f.Data, &ho) == nil
			h.ranFor(ho.CPU)
			h.stintEnded(hello.Epoch, nil)
			if ok { // an agent that says nothing of its signals: none sent again
				h.handedOver(hello.Epoch, ho)
			}
			return
		case api.FrameExit:
			var st api.ExitStatus
			json.Unmarshal(f.Data, &st)
			h.ranFor(st.CPU)
			h.stintEnded(hello.Epoch, &st)
			return
		}
	}
}
