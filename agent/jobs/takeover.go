package jobs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Homes that die: when membership declares a job's home dead, the node
// the job runs on becomes its home. It makes the job's record from what
// its runner knows, streams the output to it from then on (what the dead
// home had not delivered is lost with it), and writes its name under the
// job's directory on the shared storage, where every node looks for the
// home of a job whose first home is dead.

// out is where the stint's output goes now.
func (r *runner) out() sink {
	r.ckMu.Lock()
	defer r.ckMu.Unlock()
	return r.sink
}

// homeNode is the job's home now.
func (r *runner) homeNode() string {
	r.ckMu.Lock()
	defer r.ckMu.Unlock()
	return r.home
}

// rehome makes home the job's home, its output going to s, and returns
// the sink it had.
func (r *runner) rehome(home string, s sink) sink {
	r.ckMu.Lock()
	defer r.ckMu.Unlock()
	old := r.sink
	r.home, r.sink = home, s
	return old
}

// homeFile names a job's home after its first one died.
func (m *Manager) homeFile(id string) string {
	return filepath.Join(m.checkpointDir(id), "home")
}

// movedHome is the node that took job id over from its dead home, or "".
func (m *Manager) movedHome(id string) string {
	b, err := os.ReadFile(m.homeFile(id))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// adoptOrphans makes this node the home of each job running here whose
// home is not alive.
func (m *Manager) adoptOrphans(alive map[string]bool) {
	m.mu.Lock()
	var orphans []*runner
	for id, r := range m.runners {
		if home := r.homeNode(); home != m.Self && !alive[home] && !r.migrating.Load() && m.homes[id] == nil {
			orphans = append(orphans, r)
		}
	}
	m.mu.Unlock()
	for _, r := range orphans {
		m.takeOver(r, r.homeNode()+", its home, died")
	}
}

// takeOver makes this node the home of r's job, its home gone (why says
// how).
func (m *Manager) takeOver(r *runner, why string) {
	dead := r.homeNode()
	name := r.spec.Name
	if name == "" && len(r.spec.Argv) > 0 {
		name = filepath.Base(r.spec.Argv[0])
	}
	h := m.newHome(api.JobInfo{ID: r.id, Name: name, Home: m.Self, State: api.JobRunning, Started: r.arrived,
		Argv: r.spec.Argv, Stay: r.spec.Stay, Node: m.Self, PID: r.pid}, r.spec)
	h.epoch, h.newest = r.epoch, r.epoch
	// Output counts start where the stint is: a recovery from this
	// stint's checkpoints skips what it wrote again since.
	h.recv = map[int]*[2]int64{r.epoch: {r.written[0].Load(), r.written[1].Load()}}
	h.info.LastMove = fmt.Sprintf("homed on %s since %s", m.Self, why)
	note := fmt.Sprintf("drift: job %s: %s; %s is its home now (output %s had not delivered is lost)\n", r.id, why, m.Self, dead)
	h.deliver(api.Frame{Type: api.FrameStderr, Data: []byte(note)})
	if err := writeFileSync(m.homeFile(r.id), []byte(m.Self+"\n")); err != nil {
		m.log().Warn("the job's new home is not on the shared storage: other nodes cannot find it", "job", r.id, "err", err)
	}
	m.mu.Lock()
	if m.homes[r.id] != nil {
		m.mu.Unlock()
		return
	}
	m.homes[r.id] = h
	m.mu.Unlock()
	if ck, _ := r.checkpointState(); ck != nil {
		b, _ := jsonNotice(*ck)
		h.output(r.epoch, api.FrameCheckpoint, b)
	}
	old := r.rehome(m.Self, localSink{h, r.epoch})
	if rs, ok := old.(*remoteSink); ok {
		rs.fc.Close() // unblocks a write to the dead home
	}
	h.runsOn(r.epoch, m.Self, r.pid, r.control, "")
	m.log().Warn("took over as the home of a job whose home died", "job", r.id, "home", dead)
	m.event(api.EventRecovery, map[string]any{"job": r.id, "from": dead, "to": m.Self, "home": true})
}

// newHome makes the record of a job homed here. When the job ends, its
// checkpoints go, unless another node has taken the job over meanwhile
// (this node was only cut off).
func (m *Manager) newHome(info api.JobInfo, spec api.JobSpec) *homeJob {
	h := newHomeJob(m.tasks.Go, info)
	h.spec, h.ckRoot, h.recordPath, h.warn = spec, m.checkpointDir(info.ID), m.recordFile(info.ID), m.log().Warn
	h.onExit = func() { m.tellLike(info.Argv) }
	h.dropDir = func(dir string) {
		if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
			// Never made (a job without checkpoints): looking for its
			// home file and removing it would each be messages to the
			// head, for every job that ends.
			return
		}
		other := m.movedHome(info.ID)
		switch {
		case dir != h.ckRoot:
		case other != "" && other != m.Self:
			return // another node took the job over: it is not ours to clean
		case other == m.Self:
			// The job's directory names this node as its home for as long
			// as it keeps the record (forgetExited removes it then): only
			// the checkpoints and the record go.
			ents, _ := os.ReadDir(dir)
			for _, e := range ents {
				if e.Name() != "home" {
					os.RemoveAll(filepath.Join(dir, e.Name()))
				}
			}
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			m.log().Warn("remove a checkpoint no longer needed", "dir", dir, "err", err)
		}
	}
	return h
}

// forgetDir removes the directory of a job this node forgets, if it
// took the job over (only its home file is left there).
func (m *Manager) forgetDir(id string) {
	if m.movedHome(id) == m.Self {
		os.RemoveAll(m.checkpointDir(id))
	}
}

// homeLost handles the break of r's stream to its home while the job runs
// here. If membership declares the home dead, adoptOrphans takes the job
// over. If the home answers and no longer knows the job (its agent was
// started again), this node becomes the job's home. If it knows it, the
// home decides (it starts the job again from a checkpoint, after making
// this node kill its copy, or ends it).
func (m *Manager) homeLost(r *runner, cause error) {
	home := r.homeNode()
	m.log().Warn("the stream to the job's home broke", "job", r.id, "home", home, "err", cause)
	for deadline := time.Now().Add(abandonTimeout); time.Now().Before(deadline); {
		select {
		case <-r.done:
			return
		case <-m.base.Done():
			return
		case <-time.After(2 * time.Second):
		}
		if r.homeNode() != home {
			return // taken over already (adoptOrphans, while the home was dead)
		}
		if !slices.Contains(m.Peers.Nodes(), home) {
			continue // adoptOrphans takes it over, unless the home comes back first
		}
		ctx, cancel := context.WithTimeout(m.base, 10*time.Second)
		j, err := m.askHome(ctx, home, r.id)
		cancel()
		if err != nil {
			continue
		}
		if j == nil || j.Home == "" {
			m.log().Warn("the job's home answers but no longer knows it (its agent was started again): this node is its home now", "job", r.id, "home", home)
			m.takeOver(r, "the agent of "+home+", its home, was started again without the job's record")
		}
		return
	}
}
