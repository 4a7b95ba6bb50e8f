package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/driftcluster/drift/agent/api"
)

// The home's side of a job's terminal: drift run and drift attach talk to
// the job's home, which relays to whichever node runs it; signals go the
// same way.

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
	ctx, done := m.streamContext(r)
	defer done()
	m.terminal(ctx, fc, h, info)
}

// terminal relays a client's stream to and from a job homed here.
func (m *Manager) terminal(ctx context.Context, fc *api.FrameConn, h *homeJob, info api.JobInfo) {
	defer fc.Close()
	fc.WriteJSON(api.FrameInfo, info)
	tc := newTermClient(fc, info.ID)
	m.tasks.Go(tc.run)
	defer func() { tc.close(); <-tc.done }() // what is queued (the exit) goes before fc closes
	if !h.attach(tc) {
		return
	}
	defer h.detach(tc)
	frames, stop := make(chan api.Frame), make(chan struct{})
	defer close(stop) // before fc.Close: the reader sees stop or a closed fc
	m.tasks.Go(func() {
		defer close(frames)
		for {
			f, err := fc.Read()
			if err != nil {
				return
			}
			select {
			case frames <- f:
			case <-stop:
				return
			}
		}
	})
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
		ctx, done := m.streamContext(r)
		defer done()
		m.terminal(ctx, fc, h, h.snapshot())
		return
	}
	ctx, done := m.streamContext(r)
	defer done()
	m.proxyStream(ctx, fc, home, "/v1/jobs/"+id+"/attach")
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
	stop := context.AfterFunc(ctx, func() { up.Close(); fc.Close() })
	defer stop()
	m.tasks.Go(func() { // the client's frames go up until either side hangs up
		for {
			f, err := fc.Read()
			if err != nil {
				up.Close()
				return
			}
			if up.Write(f.Type, f.Data) != nil {
				return
			}
		}
	})
	for {
		f, err := up.Read()
		if err != nil {
			return
		}
		if fc.Write(f.Type, f.Data) != nil {
			return
		}
	}
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
	switch {
	case h != nil: // homed here, first or since its home died
		return h, m.Self, nil
	case home == m.Self || m.Peers != nil && !slices.Contains(m.Peers.Nodes(), home):
		// Its home is dead, or is this node and lost the job with its
		// agent: the node that took it over says so on the shared storage.
		if moved := m.movedHome(id); moved != "" && moved != m.Self {
			return nil, moved, nil
		}
		if home == m.Self {
			return nil, "", fmt.Errorf("no job %s (drift ps lists the jobs)", id)
		}
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
