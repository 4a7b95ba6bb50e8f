package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
)

// Recovery: when membership declares dead the node a job runs on, its
// home starts the job again on a live node from its newest checkpoint,
// with the same two steps as a move's target (restore held, then commit),
// so that at no instant do two copies run. The output the job writes
// again, from the checkpoint up to what the home had received, is not
// shown twice.

// checkpointed records a checkpoint notice from stint epoch. h.mu is held.
func (h *homeJob) checkpointed(epoch int, data []byte) {
	var n checkpointNotice
	if json.Unmarshal(data, &n) != nil || epoch < h.epoch {
		return
	}
	if n.Dir == "" {
		if h.exit == nil {
			h.info.NoCheckpoint = n.Note
		}
		return
	}
	if h.exit != nil && h.dropDir != nil { // published as the job ended
		root := h.ckRoot
		h.spawn(func() { h.dropDir(root) })
		return
	}
	if h.exit != nil || n.Epoch != epoch || (h.ckpt != nil && (n.Epoch < h.ckpt.Epoch || n.Epoch == h.ckpt.Epoch && n.Seq <= h.ckpt.Seq)) {
		return
	}
	var base [2]int64
	for e, c := range h.recv {
		if e < epoch {
			base[0] += c[0]
			base[1] += c[1]
		}
	}
	base[0] += n.Out
	base[1] += n.Err
	old := h.ckpt
	ci := n.CheckpointInfo
	h.ckpt, h.ckBase = &ci, base
	shown := ci
	shown.Stdin = nil
	h.info.Checkpoint, h.info.NoCheckpoint = &shown, ""
	h.saveRecord()
	if old != nil && old.Dir != ci.Dir && h.dropDir != nil {
		dir := old.Dir
		h.spawn(func() { h.dropDir(dir) })
	}
}

// startRecovery begins the recovery of a job whose stint runs on node,
// declared dead: it leaves that stint (its output is dropped from now on,
// and it is told to die, in case it is only cut off), and returns the
// checkpoint, the stint to restore as and the output to skip. ok is false
// when there is nothing to recover (no checkpoint, or the job left node,
// exited, or is being recovered).
func (h *homeJob) startRecovery(node string) (ci api.CheckpointInfo, epoch int, skip [2]int64, ok bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exit != nil || h.ckpt == nil || h.recovering || h.info.Node != node || !h.movedAt.IsZero() {
		return ci, 0, skip, false
	}
	h.recovering = true
	if ctl := h.control; ctl != nil { // the stint's stream may be alive if node was only cut off
		h.spawn(func() { ctl(api.Frame{Type: api.FrameSignal, Data: []byte{byte(syscall.SIGKILL)}}) })
	}
	h.control = nil
	epoch = max(h.newest, h.epoch) + 1
	var total [2]int64
	for _, c := range h.recv {
		total[0] += c[0]
		total[1] += c[1]
	}
	skip = [2]int64{max(0, total[0]-h.ckBase[0]), max(0, total[1]-h.ckBase[1])}
	if h.skip == nil {
		h.skip = map[int]*[2]int64{}
	}
	s := skip
	h.skip[epoch] = &s
	// Every stint before the new one is over: what they send now is dropped.
	for e := range h.held {
		delete(h.held, e)
	}
	clear(h.ended)
	h.epoch, h.newest = epoch, epoch
	h.movedAt = time.Now() // lostInMove ends it if no stint ever starts
	h.info.State = api.JobMigrating
	return *h.ckpt, epoch, skip, true
}

// recovered records where the job runs again, and tells its terminals.
func (h *homeJob) recovered(node, dead string, ci api.CheckpointInfo, redone time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recovering = false
	note := fmt.Sprintf("recovered on %s from the checkpoint of %s, %s of work redone (%s died)",
		node, ci.At.Local().Format("15:04:05"), redone.Round(time.Second), dead)
	h.info.Recovered = note
	h.info.LastMove = note
	h.deliver(api.Frame{Type: api.FrameStderr, Data: []byte("drift: job " + h.info.ID + " " + note + "\n")})
}

// recoveryFailed ends the job: no node could start it again.
func (h *homeJob) recoveryFailed(dead string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recovering = false
	h.finish(&api.ExitStatus{Code: 255, Error: fmt.Sprintf("%s, where the job ran, died, and no node could start it again from its checkpoint: %v", dead, err)})
}

// recover starts job id again from its newest checkpoint: the node it
// ran on (dead) was declared dead, or, alive is true, its stream broke
// (its agent died and started again). It reports whether it took the job
// on (false: there is no checkpoint). A node that lives is first made to
// kill what it still runs of the job; a dead one is told so if it comes
// back.
func (m *Manager) recover(id string, h *homeJob, dead string, alive bool) bool {
	ci, epoch, skip, ok := h.startRecovery(dead)
	if !ok {
		return false
	}
	why := "its node died"
	if alive {
		why = "its stream from its node broke"
	}
	m.log().Warn("recovering job from its checkpoint: "+why, "job", id, "node", dead, "checkpoint", ci.Dir, "skip_out", skip[0], "skip_err", skip[1])
	m.tasks.Go(func() {
		t0 := time.Now()
		if alive {
			if err := m.abandonOn(dead, id, epoch); err != nil {
				m.log().Error("job lost: its node could not be made to stop it, so it is not started again elsewhere", "job", id, "node", dead, "err", err)
				h.recoveryFailed(dead, fmt.Errorf("%s did not confirm that its copy is gone: %w", dead, err))
				return
			}
		} else if dead != m.Self {
			m.abandonLater(dead, id, epoch)
		}
		node, err := m.restoreCheckpoint(id, h, ci, epoch, dead)
		if err != nil {
			m.log().Error("job lost: no node could start it again from its checkpoint", "job", id, "err", err)
			h.recoveryFailed(dead, err)
			m.event(api.EventRecovery, map[string]any{"job": id, "from": dead, "error": err.Error()})
			return
		}
		redone := t0.Sub(ci.At)
		if !alive {
			redone = time.Since(ci.At)
		}
		m.log().Info("job recovered", "job", id, "node", node, "from", dead, "checkpoint", ci.At, "restore", time.Since(t0))
		m.event(api.EventRecovery, map[string]any{"job": id, "from": dead, "to": node, "checkpoint_age_s": redone.Seconds(), "restore_s": time.Since(t0).Seconds()})
	})
	return true
}

// restoreCheckpoint restores ci as stint epoch on the best live node (or
// the next ones if it fails), and returns the node.
func (m *Manager) restoreCheckpoint(id string, h *homeJob, ci api.CheckpointInfo, epoch int, dead string) (string, error) {
	var order []string
	if m.Place != nil {
		if n, _, err := m.Place(); err == nil && n != dead {
			order = append(order, n)
		}
	}
	for _, n := range m.Peers.Nodes() {
		if n != dead && !slices.Contains(order, n) {
			order = append(order, n)
		}
	}
	if len(order) == 0 {
		return "", errors.New("no live node")
	}
	h.mu.Lock()
	spec := h.spec
	h.mu.Unlock()
	// A move of the job that its dead node had begun may have left a copy
	// restored and held on its target: it goes first, and every live node
	// must say so. A held copy is frozen, but it is a copy: none starts
	// here while one may still be held there. Past HoldTimeout, a target
	// has killed a copy whose dead source never said it may run.
	var dropped sync.WaitGroup
	deadline := time.Now().Add(migrate.HoldTimeout)
	for _, n := range m.Peers.Nodes() {
		dropped.Go(func() { m.dropHeld(n, id, deadline) })
	}
	dropped.Wait()
	var errs []string
	for _, node := range order {
		c, err := m.Peers.Client(node)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", node, err))
			continue
		}
		reason := fmt.Sprintf("recovered from a checkpoint: %s died", dead)
		req := api.RestoreRequest{Spec: spec, Home: m.Self, Epoch: epoch, Stdio: ci.Stdio, Stdin: ci.Stdin, StdinEOF: ci.StdinEOF, Reason: reason, Checkpoint: ci.Dir}
		ctx, cancel := context.WithTimeout(m.base, 2*time.Minute)
		err = c.Restore(ctx, id, req)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", node, err))
			dctx, dcancel := context.WithTimeout(m.base, 10*time.Second)
			c.Discard(dctx, id)
			dcancel()
			continue
		}
		// Held there, stopped: the terminal hears of it before the job
		// writes anything again.
		h.recovered(node, dead, ci, time.Since(ci.At))
		cctx, ccancel := context.WithTimeout(m.base, time.Minute)
		err = c.Commit(cctx, id)
		ccancel()
		if err != nil {
			return "", fmt.Errorf("%s restored it but did not start it: %w", node, err)
		}
		return node, nil
	}
	return "", errors.New(strings.Join(errs, "; "))
}

// dropHeldEvery is how often a recovery asks a silent node again to
// drop a copy it may hold.
var dropHeldEvery = 2 * time.Second

// dropHeld asks node to drop any copy of job id it holds, again every
// dropHeldEvery until it answers, leaves the cluster, or deadline passes.
func (m *Manager) dropHeld(node, id string, deadline time.Time) {
	for {
		c, err := m.Peers.Client(node)
		if err == nil {
			ctx, cancel := context.WithTimeout(m.base, 10*time.Second)
			err = c.Discard(ctx, id)
			cancel()
			if err == nil {
				return
			}
		}
		if !slices.Contains(m.Peers.Nodes(), node) {
			return
		}
		if time.Now().After(deadline) {
			m.log().Warn("recovery: a node never said it dropped any copy of the job it held; going on, as such a copy is killed by now", "job", id, "node", node, "err", err)
			return
		}
		m.log().Warn("recovery: ask a node to drop a held copy of the job; asking again", "job", id, "node", node, "in", dropHeldEvery, "err", err)
		select {
		case <-m.base.Done():
			return
		case <-time.After(dropHeldEvery):
		}
	}
}

// checkpointPath checks that dir is a job's published checkpoint under
// the shared storage (a restore reads nothing else).
func (m *Manager) checkpointPath(id, dir string) error {
	want := m.checkpointDir(id) + "/"
	if !strings.HasPrefix(filepath.Clean(dir)+"/", want) || filepath.Clean(dir)+"/" == want || strings.Contains(dir, "..") {
		return fmt.Errorf("restore %s: %q is not one of its checkpoints (under %s)", id, dir, want)
	}
	return nil
}

// abandonTimeout bounds how long a home tries to make a live node kill
// its copy of a job before it gives up starting the job elsewhere.
const abandonTimeout = 2 * time.Minute

// abandonOn makes node kill what it runs of job id before stint epoch,
// trying until it answers; if membership declares node dead meanwhile,
// it is told when it comes back instead.
func (m *Manager) abandonOn(node, id string, epoch int) error {
	deadline := time.Now().Add(abandonTimeout)
	for {
		err := m.abandon(node, id, epoch)
		if err == nil {
			return nil
		}
		if !slices.Contains(m.Peers.Nodes(), node) {
			m.abandonLater(node, id, epoch)
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-m.base.Done():
			return m.base.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func (m *Manager) abandon(node, id string, epoch int) error {
	c, err := m.Peers.Client(node)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(m.base, 15*time.Second)
	defer cancel()
	res, err := c.Abandon(ctx, id, api.AbandonRequest{Before: epoch})
	if err == nil && res.Killed {
		m.log().Warn("a copy of a job started again elsewhere still ran: killed", "job", id, "node", node)
	}
	return err
}

// abandonment is a copy of a job that a node declared dead may still run.
type abandonment struct {
	id     string
	before int
}

// abandonLater remembers to tell node, once it is alive again, that job
// id runs elsewhere now: a node that was only cut off may still run it.
func (m *Manager) abandonLater(node, id string, epoch int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.toAbandon == nil {
		m.toAbandon = map[string][]abandonment{}
	}
	m.toAbandon[node] = append(m.toAbandon[node], abandonment{id, epoch})
}

// abandonReturned tells the nodes that came back which of their jobs run
// elsewhere now (findGone calls it with the live nodes).
func (m *Manager) abandonReturned(alive map[string]bool) {
	m.mu.Lock()
	var due map[string][]abandonment
	for node, list := range m.toAbandon {
		if alive[node] {
			if due == nil {
				due = map[string][]abandonment{}
			}
			due[node] = list
			delete(m.toAbandon, node)
		}
	}
	m.mu.Unlock()
	for node, list := range due {
		m.tasks.Go(func() {
			for _, a := range list {
				if err := m.abandon(node, a.id, a.before); err != nil {
					m.log().Warn("tell a node that came back that a job runs elsewhere now", "node", node, "job", a.id, "err", err)
					m.abandonLater(node, a.id, a.before)
				}
			}
		})
	}
}

// handleAbandon kills what runs here of a job whose home started it again
// elsewhere, and answers once it is gone.
func (m *Manager) handleAbandon(w http.ResponseWriter, r *http.Request) {
	var req api.AbandonRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Before <= 0 {
		http.Error(w, "abandon: want the stint the job runs as now", http.StatusBadRequest)
		return
	}
	id := r.PathValue("id")
	if first, _ := api.JobHome(id); first != m.Self && m.homeJobs()[id] != nil {
		http.Error(w, "abandon "+id+": "+m.Self+" took it over as its home when "+first+" was declared dead", http.StatusConflict)
		return
	}
	rn := m.runnerOf(id)
	if rn == nil || rn.epoch >= req.Before {
		api.WriteJSON(w, api.AbandonResult{})
		return
	}
	m.log().Warn("killing a job its home started again elsewhere", "job", id, "stint", rn.epoch, "now", req.Before)
	rn.signal(syscall.SIGKILL)
	if !rn.ended(10 * time.Second) {
		http.Error(w, "abandon "+id+": the job did not end within 10 s of SIGKILL", http.StatusInternalServerError)
		return
	}
	api.WriteJSON(w, api.AbandonResult{Killed: true})
}
