package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Records on the shared storage: the home of a job that has a checkpoint
// keeps the job's record (what it runs, where, its newest checkpoint)
// beside the checkpoint. If the job ran on its home and that node dies,
// nobody else knows the job: every live node then looks for such records,
// one of them claims the job (it creates the job's home file first) and
// starts it again from its checkpoint, as its new home.

// jobRecord is a job's record on the shared storage.
type jobRecord struct {
	Spec       api.JobSpec         `json:"spec"`
	Info       api.JobInfo         `json:"info"`
	Epoch      int                 `json:"epoch"` // the newest stint
	Checkpoint *api.CheckpointInfo `json:"checkpoint"`
}

func (m *Manager) recordFile(id string) string {
	return filepath.Join(m.checkpointDir(id), "record.json")
}

// saveRecord writes h's record, as it is when the write starts, if the job
// has a checkpoint; writes of one job go one at a time.
func (h *homeJob) saveRecord() {
	if h.recordPath == "" {
		return
	}
	h.spawn(func() {
		h.recMu.Lock()
		defer h.recMu.Unlock()
		h.mu.Lock()
		if h.ckpt == nil || h.exit != nil {
			h.mu.Unlock()
			return
		}
		rec := jobRecord{Spec: h.spec, Info: h.info, Epoch: h.newest, Checkpoint: h.ckpt}
		h.mu.Unlock()
		b, err := json.Marshal(rec)
		if err == nil {
			err = writeFileSync(h.recordPath, b)
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			h.warn("save the job's record on the shared storage", "job", rec.Info.ID, "err", err)
		}
	})
}

// claimOrphans starts again, from their checkpoints, the jobs that ran on
// their home node dead, when this node claims them first. dead lists the
// nodes declared dead since the last look.
func (m *Manager) claimOrphans(dead []string) {
	if len(dead) == 0 {
		return
	}
	dir := filepath.Join(m.sharedRoot(), api.CheckpointDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		id := e.Name()
		b, err := os.ReadFile(m.recordFile(id))
		if err != nil {
			continue
		}
		var rec jobRecord
		if json.Unmarshal(b, &rec) != nil || rec.Checkpoint == nil || rec.Info.ID != id {
			continue
		}
		node := rec.Info.Node
		if node != rec.Info.Home || !slices.Contains(dead, node) {
			continue
		}
		m.mu.Lock()
		mine := m.homes[id] != nil
		m.mu.Unlock()
		if mine {
			continue
		}
		if !m.claim(id) {
			continue
		}
		m.adoptRecord(rec, node+", its home and the node it ran on, died")
	}
}

// claimOwn starts again, from their checkpoints, the jobs homed here that
// ran here when this node's agent died (it killed them as it started),
// and those a whole cluster that stopped left on the shared storage:
// records of jobs homed here that no node has taken over. It runs once the
// shared storage is mounted.
func (m *Manager) claimOwn(ctx context.Context) {
	if m.WaitShared != nil {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		ok := m.WaitShared(wctx)
		cancel()
		if !ok {
			return
		}
	} else if !isMountPoint(m.sharedRoot()) && m.SharedRoot == "" {
		return
	}
	ents, _ := os.ReadDir(filepath.Join(m.sharedRoot(), api.CheckpointDir))
	for _, e := range ents {
		b, err := os.ReadFile(m.recordFile(e.Name()))
		if err != nil {
			continue
		}
		var rec jobRecord
		if json.Unmarshal(b, &rec) != nil || rec.Checkpoint == nil || rec.Info.ID != e.Name() || rec.Info.Home != m.Self || rec.Info.Node != m.Self {
			continue
		}
		if !m.claim(rec.Info.ID) {
			continue // another node took it
		}
		m.adoptRecord(rec, "the agent of "+m.Self+", its home and the node it ran on, was started again")
	}
}

// adoptRecord becomes the home of the job rec describes, which ran on its
// home, gone (why says how), and starts it again from its checkpoint.
func (m *Manager) adoptRecord(rec jobRecord, why string) {
	id, dead := rec.Info.ID, rec.Info.Node
	info := rec.Info
	info.Home, info.State, info.PID = m.Self, api.JobRunning, 0
	info.Checkpoint = nil
	h := m.newHome(info, rec.Spec)
	h.epoch, h.newest = rec.Epoch, rec.Epoch
	ci := *rec.Checkpoint
	h.ckpt = &ci
	shown := ci
	shown.Stdin = nil
	h.info.Checkpoint = &shown
	h.deliver(api.Frame{Type: api.FrameStderr, Data: []byte(fmt.Sprintf(
		"drift: job %s: %s; %s is its home now, and the output since its checkpoint is shown again\n", id, why, m.Self))})
	m.mu.Lock()
	m.homes[id] = h
	m.mu.Unlock()
	m.log().Warn("claimed a job whose home died with it, to start it again from its checkpoint", "job", id, "home", dead)
	if !m.recover(id, h, dead, false) {
		h.mu.Lock()
		h.finish(&api.ExitStatus{Code: 255, Error: dead + ", the job's home and node, died, and it could not be started again"})
		h.mu.Unlock()
	}
}

// deadWatch remembers which nodes were declared dead, to look for their
// orphaned jobs once each time.
type deadWatch struct {
	mu    sync.Mutex
	known map[string]bool // every node seen alive
	seen  map[string]bool // dead nodes already looked at
}

// newlyDead returns the nodes seen alive before and not alive now that it
// did not return before; a node alive again is forgotten.
func (d *deadWatch) newlyDead(alive map[string]bool) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.known == nil {
		d.known, d.seen = map[string]bool{}, map[string]bool{}
	}
	for n := range alive {
		d.known[n] = true
		delete(d.seen, n)
	}
	var out []string
	for n := range d.known {
		if !alive[n] && !d.seen[n] {
			d.seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

// claim makes this node the home of job id if no node is yet: the first
// to create the job's home file (O_EXCL on the shared storage) wins.
func (m *Manager) claim(id string) bool {
	f, err := os.OpenFile(m.homeFile(id), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return false
	}
	fmt.Fprintln(f, m.Self)
	f.Sync()
	f.Close()
	return true
}
