package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
	"golang.org/x/sys/unix"
)

// Checkpoints: the node that runs a job dumps it now and then, leaving it
// running, and publishes the images on the shared storage
// (SharedRoot/.drift/jobs/ID/ckpt-EPOCH-SEQ). Once published, the stint
// tells the job's home in its stream (FrameCheckpoint), after every byte
// of output the checkpoint counts: the home keeps the newest one and
// removes the one before. When the job's node dies, the home restores the
// newest on a live node (recover.go).

// checkpointRetry is how long a stint waits before it tries again a
// checkpoint that could not be taken (the job held something that cannot
// move, or there was no room).
const checkpointRetry = 30 * time.Second

// errNoCheckpoint prefixes why a checkpoint was not taken (the job holds
// something that cannot move, there is no room): nothing failed.
var errNoCheckpoint = errors.New("no checkpoint")

func streamIndex(t byte) int {
	if t == api.FrameStderr {
		return 1
	}
	return 0
}

func (m *Manager) checkpointEvery(spec api.JobSpec) time.Duration {
	switch {
	case spec.CheckpointEvery != 0:
		return spec.CheckpointEvery
	case m.CheckpointEvery != 0:
		return m.CheckpointEvery
	}
	return api.DefaultCheckpointEvery
}

// checkpointDir is where job id's checkpoints are published.
func (m *Manager) checkpointDir(id string) string {
	return filepath.Join(m.sharedRoot(), api.CheckpointDir, id)
}

// checkpoints checkpoints r's job until its stint ends: the first after
// the job's interval, each next one after the interval or twenty times
// what the last one cost, whichever is longer (checkpoints cost the job
// at most about api.CheckpointCost of its time).
func (m *Manager) checkpoints(r *runner) {
	every := m.checkpointEvery(r.spec)
	if every < 0 || r.spec.Stay && r.spec.CheckpointEvery == 0 {
		why := "checkpoints are off for this job (drift run --checkpoint-every 0)"
		if every >= 0 {
			why = "the job stays on its node (--stay): it is not checkpointed unless drift run --checkpoint-every asks"
		}
		r.note(m, why)
		return
	}
	wait := every
	seq := 0
	for {
		select {
		case <-r.done:
			return
		case <-m.base.Done():
			return
		case <-time.After(wait):
		}
		if !r.migrating.CompareAndSwap(false, true) {
			wait = 5 * time.Second // a move is under way
			continue
		}
		seq++
		r.checkpointing.Store(true)
		ci, err := m.checkpoint(r, seq)
		r.checkpointing.Store(false)
		r.migrating.Store(false)
		if m.OnCheckpoint != nil {
			switch {
			case err == nil:
				m.OnCheckpoint("ok", ci.Freeze, ci.Bytes)
			case errors.Is(err, errNoCheckpoint):
				m.OnCheckpoint("skipped", 0, 0)
			default:
				m.OnCheckpoint("failed", 0, 0)
			}
		}
		if err != nil {
			r.note(m, err.Error())
			wait = max(every, checkpointRetry)
			continue
		}
		if ci.Dir != "" {
			m.tellHome(r, ci)
		}
		// What it cost: the freeze, and the copy to the shared storage,
		// which takes CPU from the job on a node with one core.
		wait = max(every, time.Duration(float64(ci.Freeze+ci.Publish)/api.CheckpointCost))
	}
}

// note records why the job has no (fresh) checkpoint, and tells the home
// when that changes.
func (r *runner) note(m *Manager, why string) {
	r.ckMu.Lock()
	same := r.ckNote == why
	r.ckNote = why
	r.ckMu.Unlock()
	if same {
		return
	}
	m.log().Info("job not checkpointed", "job", r.id, "why", why)
	b, _ := json.Marshal(checkpointNotice{Note: why})
	r.out().output(api.FrameCheckpoint, b)
}

// checkpointNotice is FrameCheckpoint's payload: a checkpoint, or why
// there is none.
type checkpointNotice struct {
	api.CheckpointInfo
	Note string `json:"note,omitempty"`
}

// checkpoint takes checkpoint seq of r's job and publishes it.
func (m *Manager) checkpoint(r *runner, seq int) (api.CheckpointInfo, error) {
	ci := api.CheckpointInfo{Epoch: r.epoch, Seq: seq, Stdio: r.inodes}
	root := m.sharedRoot()
	if !isMountPoint(root) && m.SharedRoot == "" {
		return ci, fmt.Errorf("%w: the shared storage is not mounted on %s", errNoCheckpoint, m.Self)
	}
	r.ckMu.Lock()
	last := r.ckpt
	r.ckMu.Unlock()
	need := int64(0)
	if last != nil {
		need = last.Bytes
	} else if u, err := proc.TreeUsage(r.pid); err == nil {
		need = int64(u.Anon) // what a dump copies
	}
	if free, err := freeBytes(root); err == nil && free < need+need/4+(4<<20) {
		return ci, fmt.Errorf("%w: no room on %s: it needs about %s, %s is free (the job goes on without one)", errNoCheckpoint, root, human(need), human(free))
	}
	ctx, cancel := context.WithTimeout(m.base, 2*time.Minute)
	defer cancel()
	dir, st, err := m.mig.Checkpoint(ctx, migrate.Job{Pid: r.pid, Stdio: r.inodes}, func() {
		if err := r.drain(5 * time.Second); err != nil {
			m.log().Warn("checkpoint: drain", "job", r.id, "err", err)
		}
		ci.At = time.Now()
		ci.Out, ci.Err = r.written[0].Load(), r.written[1].Load()
		r.stdinMu.Lock()
		ci.Stdin, _ = peekPipe(fmt.Sprintf("/proc/%d/fd/0", r.pid))
		ci.StdinEOF = r.stdinEOF.Load()
		r.stdinMu.Unlock()
	})
	if err != nil {
		var nm *migrate.NotMigratableError
		if errors.As(err, &nm) {
			return ci, fmt.Errorf("%w: cannot be checkpointed: %w", errNoCheckpoint, err)
		}
		return ci, fmt.Errorf("checkpoint failed: %w", err)
	}
	defer os.RemoveAll(dir)
	ci.Freeze, ci.Bytes = st.Freeze, st.Bytes
	ci.Dir = filepath.Join(m.checkpointDir(r.id), fmt.Sprintf("ckpt-%d-%d", r.epoch, seq))
	t0 := time.Now()
	if err := migrate.Publish(dir, ci.Dir); err != nil {
		if errors.Is(err, unix.ENOSPC) {
			return ci, fmt.Errorf("%w: no room on %s (%s needed): the job goes on without one", errNoCheckpoint, root, human(ci.Bytes))
		}
		return ci, err
	}
	ci.Publish = time.Since(t0)
	select {
	case <-r.done: // the job ended meanwhile: nobody will restore it
		os.RemoveAll(ci.Dir)
		os.Remove(filepath.Dir(ci.Dir)) // if its home removed the rest already
		ci.Dir = ""
		return ci, nil
	default:
	}
	r.ckMu.Lock()
	r.ckpt, r.ckNote = &ci, ""
	r.ckMu.Unlock()
	m.log().Info("checkpoint", "job", r.id, "seq", seq, "bytes", ci.Bytes, "freeze", ci.Freeze, "publish", ci.Publish)
	return ci, nil
}

// tellHome sends the home the notice of a checkpoint, once the job may
// move again: a home that died meanwhile holds the write up until this
// node takes the job over (takeover.go).
func (m *Manager) tellHome(r *runner, ci api.CheckpointInfo) {
	b, _ := jsonNotice(ci)
	if err := r.out().output(api.FrameCheckpoint, b); err != nil {
		m.log().Warn("checkpoint: the home was not told", "job", r.id, "err", err)
	}
}

// checkpointState is the newest checkpoint of the job r runs, and why it
// has none or an old one.
func (r *runner) checkpointState() (*api.CheckpointInfo, string) {
	r.ckMu.Lock()
	defer r.ckMu.Unlock()
	return r.ckpt, r.ckNote
}

func freeBytes(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%d KiB", n>>10)
}

func jsonNotice(ci api.CheckpointInfo) ([]byte, error) {
	return json.Marshal(checkpointNotice{CheckpointInfo: ci})
}
