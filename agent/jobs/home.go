package jobs

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// backlogMax bounds the output a home keeps while no client is attached.
const backlogMax = 1 << 20

// client is an attached terminal (drift run, drift attach).
type client interface {
	Write(t byte, data []byte) error
}

// homeJob is a job's record at its home: where it runs, its terminal.
type homeJob struct {
	spawn    func(func()) // runs a goroutine its Manager owns
	mu       sync.Mutex
	info     api.JobInfo
	epoch    int                     // the stint whose output is delivered now
	held     map[int][]api.Frame     // output of later stints, held until earlier ones end
	ended    map[int]*api.ExitStatus // later stints that ended already (nil value: moved)
	clients  map[client]bool
	backlog  []api.Frame // output while nobody is attached
	blBytes  int
	dropped  int // bytes of output dropped from the backlog's front
	exit     *api.ExitStatus
	exitAt   time.Time // when it exited
	movedAt  time.Time // when its last stint ended as moved, until the next one starts
	newest   int       // the newest stint that started
	exited   chan struct{}
	control  func(api.Frame) // to the current stint: stdin, signals; nil: none yet
	ctlEpoch int             // the stint control goes to
	sigSent  map[int][]int   // the signals sent to each stint, until it ends
	sigNext  []int           // signals for the next stint: they came after the last one moved away
	cpu      time.Duration   // CPU time its stints that ended used
	like     time.Duration   // median CPU time of the jobs like it that ended since it started; 0: none yet
	onExit   func()          // run (in a goroutine) once it has exited; nil: nothing

	inMu    sync.Mutex    // keeps stdin in order across the first stint's start; taken before mu
	input   []api.Frame   // stdin sent before the first stint took control
	inBytes int           // bytes in input
	flushed chan struct{} // closed once input has been handed to the first stint

	spec       api.JobSpec         // what it runs, for a recovery
	recv       map[int]*[2]int64   // bytes of stdout and stderr received from each stint
	skip       map[int]*[2]int64   // bytes a recovered stint writes again, not to be shown twice
	ckpt       *api.CheckpointInfo // the newest complete checkpoint
	ckBase     [2]int64            // the job's output (all stints) up to ckpt
	recovering bool                // a recovery is under way
	dropDir    func(dir string)    // removes a checkpoint no longer needed; nil: none
	ckRoot     string              // where the job's checkpoints are published
	recordPath string              // where its record is kept on the shared storage; "": nowhere
	recMu      sync.Mutex          // one write of the record at a time
	warn       func(msg string, args ...any)
}

// maxEarlyInput bounds the stdin kept for a job whose first stint has not
// started yet.
const maxEarlyInput = 1 << 20

func newHomeJob(spawn func(func()), info api.JobInfo) *homeJob {
	return &homeJob{spawn: spawn, info: info, epoch: 1, held: map[int][]api.Frame{}, ended: map[int]*api.ExitStatus{},
		clients: map[client]bool{}, exited: make(chan struct{})}
}

// output delivers a stint's output in stint order. Output of a stint
// that the job has left for good (its node died and the job started again
// elsewhere) is dropped.
func (h *homeJob) output(epoch int, t byte, data []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if t == api.FrameCheckpoint {
		h.checkpointed(epoch, data)
		return
	}
	if epoch < h.epoch {
		return
	}
	if t == api.FrameStdout || t == api.FrameStderr {
		i := streamIndex(t)
		if h.recv == nil {
			h.recv = map[int]*[2]int64{}
		}
		if h.recv[epoch] == nil {
			h.recv[epoch] = &[2]int64{}
		}
		h.recv[epoch][i] += int64(len(data))
		if sk := h.skip[epoch]; sk != nil && sk[i] > 0 {
			n := min(sk[i], int64(len(data)))
			sk[i] -= n
			if sk[0] == 0 && sk[1] == 0 && h.warn != nil {
				h.warn("recovered job caught up: what it writes now was never shown", "job", h.info.ID)
			}
			if data = data[n:]; len(data) == 0 {
				return
			}
		}
	}
	if epoch > h.epoch {
		h.held[epoch] = append(h.held[epoch], api.Frame{Type: t, Data: data})
		return
	}
	h.deliver(api.Frame{Type: t, Data: data})
}

// deliver sends a frame to every client, or keeps it for the next one.
// h.mu is held.
func (h *homeJob) deliver(f api.Frame) {
	if len(h.clients) == 0 {
		h.backlog = append(h.backlog, f)
		h.blBytes += len(f.Data)
		for h.blBytes > backlogMax && len(h.backlog) > 1 {
			if t := h.backlog[0].Type; t == api.FrameStdout || t == api.FrameStderr {
				h.dropped += len(h.backlog[0].Data)
			}
			h.blBytes -= len(h.backlog[0].Data)
			h.backlog = h.backlog[1:]
		}
		return
	}
	for c := range h.clients {
		if err := c.Write(f.Type, f.Data); err != nil {
			delete(h.clients, c)
		}
	}
}

// stintEnded records the end of a stint: the job moved (exit nil) or exited.
func (h *homeJob) stintEnded(epoch int, exit *api.ExitStatus) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if epoch < h.epoch { // a stint the job left for good (a recovery started it again)
		return
	}
	if epoch > h.epoch {
		h.ended[epoch] = exit
		return
	}
	for {
		if exit != nil {
			h.finish(exit)
			return
		}
		// Moved: the next stint's output is now in order.
		h.epoch++
		if h.newest < h.epoch { // the next stint has not started yet
			h.movedAt = time.Now()
		}
		for _, f := range h.held[h.epoch] {
			h.deliver(f)
		}
		delete(h.held, h.epoch)
		e, ok := h.ended[h.epoch]
		if !ok {
			return
		}
		delete(h.ended, h.epoch)
		exit = e
	}
}

// finish records the job's exit and tells every client. h.mu is held.
func (h *homeJob) finish(exit *api.ExitStatus) {
	if h.exit != nil {
		return
	}
	h.exit, h.exitAt = exit, time.Now()
	h.sigSent, h.sigNext = nil, nil
	h.info.State = api.JobExited
	if h.dropDir != nil && h.ckRoot != "" {
		dir := h.ckRoot
		h.spawn(func() { h.dropDir(dir) })
	}
	if h.onExit != nil {
		h.spawn(h.onExit)
	}
	code := exit.Code
	h.info.Exit = &code
	b, _ := json.Marshal(exit)
	h.deliver(api.Frame{Type: api.FrameExit, Data: b})
	close(h.exited)
}

// attach adds a client: it first gets the output kept while nobody was
// attached. It returns false if the job has exited (the client got the
// exit frame already).
func (h *homeJob) attach(c client) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.dropped > 0 { // where the kept output begins, said where it shows
		c.Write(api.FrameStderr, fmt.Appendf(nil, "drift: %d bytes of the job's output before this were dropped while no terminal was attached (a home keeps the last %d KiB)\n", h.dropped, backlogMax>>10))
	}
	for _, f := range h.backlog {
		c.Write(f.Type, f.Data)
	}
	if h.exit != nil {
		// The job has ended: its output is kept for whoever attaches
		// next, and each gets the exit status, even when it went to a
		// terminal attached when the job ended.
		if n := len(h.backlog); n == 0 || h.backlog[n-1].Type != api.FrameExit {
			b, _ := json.Marshal(h.exit)
			c.Write(api.FrameExit, b)
		}
		return false
	}
	h.backlog, h.blBytes, h.dropped = nil, 0, 0
	h.clients[c] = true
	return true
}

func (h *homeJob) detach(c client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.clients, c)
}

// send passes stdin or a signal to the stint that runs the job now.
// Stdin sent before the first stint has started is kept for it; a signal
// then is refused (false). A signal that comes while the job is between
// two stints (it moved, and its next stint has not started yet) is kept
// for the next one.
func (h *homeJob) send(f api.Frame) bool {
	h.inMu.Lock()
	h.mu.Lock()
	ctl := h.control
	if ctl != nil && f.Type == api.FrameSignal && len(f.Data) == 1 {
		sig := int(f.Data[0])
		if h.ctlEpoch < h.epoch { // that stint has ended as moved
			h.sigNext = append(h.sigNext, sig)
			h.mu.Unlock()
			h.inMu.Unlock()
			return true
		}
		if h.sigSent == nil {
			h.sigSent = map[int][]int{}
		}
		h.sigSent[h.ctlEpoch] = append(h.sigSent[h.ctlEpoch], sig)
	}
	h.mu.Unlock()
	if ctl == nil {
		defer h.inMu.Unlock()
		if (f.Type != api.FrameStdin && f.Type != api.FrameStdinEOF) || h.inBytes+len(f.Data) > maxEarlyInput {
			return false
		}
		h.input = append(h.input, f)
		h.inBytes += len(f.Data)
		return true
	}
	flushed := h.flushed
	h.inMu.Unlock()
	if flushed != nil {
		<-flushed // what came first goes first
	}
	ctl(f)
	return true
}

// runsOn records that stint epoch runs on node, controlled through ctl,
// and hands it the stdin that came before (without waiting: the job may
// not read it yet).
func (h *homeJob) runsOn(epoch int, node string, pid int, ctl func(api.Frame), reason string) {
	h.inMu.Lock()
	defer h.inMu.Unlock()
	if !h.setStint(epoch, node, pid, ctl, reason) || len(h.input) == 0 {
		return
	}
	input, done := h.input, make(chan struct{})
	h.input, h.inBytes, h.flushed = nil, 0, done
	h.spawn(func() {
		defer close(done)
		for _, f := range input {
			ctl(f)
		}
	})
}

func (h *homeJob) setStint(epoch int, node string, pid int, ctl func(api.Frame), reason string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if epoch < h.epoch {
		return false
	}
	h.control, h.ctlEpoch = ctl, epoch
	h.newest = max(h.newest, epoch)
	if len(h.sigNext) > 0 && ctl != nil {
		h.resend(h.sigNext)
		h.sigNext = nil
	}
	h.tellLike()
	h.movedAt = time.Time{}
	if h.info.Node != "" && h.info.Node != node {
		h.info.Moves++
		h.info.LastMove = reason
		if reason == "" {
			h.info.LastMove = "drift migrate"
		}
	}
	if h.info.Node != node && h.ckpt != nil {
		defer h.saveRecord() // after h.info is set: it writes in a goroutine of its own
	}
	h.info.Node, h.info.PID = node, pid
	if h.exit == nil {
		h.info.State = api.JobRunning
	}
	return true
}

// handedOver sends again, to the job's next stint, the signals that stint
// epoch did not deliver before the job moved away: those it kept while
// the job was moving, and those sent after it stopped reading.
func (h *homeJob) handedOver(epoch int, ho handOver) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sent := h.sigSent[epoch]
	delete(h.sigSent, epoch)
	again := ho.Kept
	if ho.Received < len(sent) {
		again = append(again, sent[ho.Received:]...)
	}
	switch {
	case len(again) == 0 || h.exit != nil:
	case h.control != nil && h.ctlEpoch > epoch:
		h.resend(again)
	default:
		h.sigNext = append(h.sigNext, again...)
	}
}

// resend sends signals to the stint control goes to. h.mu is held.
func (h *homeJob) resend(sigs []int) {
	if h.sigSent == nil {
		h.sigSent = map[int][]int{}
	}
	h.sigSent[h.ctlEpoch] = append(h.sigSent[h.ctlEpoch], sigs...)
	ctl, sigs := h.control, slices.Clone(sigs)
	h.spawn(func() {
		for _, sig := range sigs {
			ctl(api.Frame{Type: api.FrameSignal, Data: []byte{byte(sig)}})
		}
	})
}

// lostInMove ends a job whose stint ended as moved longer than limit ago
// while no next stint started: its target never let it run (the move's
// commit was lost, or the target died holding it). It reports whether it
// did.
func (h *homeJob) lostInMove(now time.Time, limit time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exit != nil || h.movedAt.IsZero() || now.Sub(h.movedAt) < limit {
		return false
	}
	h.finish(&api.ExitStatus{Code: 255, Error: fmt.Sprintf("the job was lost in a move to another node: no node ran it in the %s after it left %s", limit.Round(time.Second), h.info.Node)})
	return true
}

// nodeGone ends a job whose stint runs on node, which the cluster
// declared dead: with no checkpoint to start it again from, the job is
// lost. It reports whether it did. A job that had left node (its stint
// there ended as moved) is not ended: lostInMove watches it.
func (h *homeJob) nodeGone(node string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.exit != nil || h.info.Node != node || !h.movedAt.IsZero() {
		return false
	}
	why := "it had no checkpoint to start again from"
	if h.info.NoCheckpoint != "" {
		why += " (" + h.info.NoCheckpoint + ")"
	}
	h.finish(&api.ExitStatus{Code: 255, Error: fmt.Sprintf("%s, where the job ran, died (the cluster declared it dead); the job is lost: %s", node, why)})
	return true
}

// streamLost records that stint epoch's stream to its node broke. If a
// later stint has started, the job moved on and lives (output the stint
// had not sent yet is lost); otherwise the job is lost with it.
func (h *homeJob) streamLost(epoch int, node string, err error) (movedOn bool) {
	h.mu.Lock()
	movedOn = h.newest > epoch
	h.mu.Unlock()
	if movedOn {
		h.stintEnded(epoch, nil)
		return true
	}
	h.stintEnded(epoch, &api.ExitStatus{Code: 255, Error: fmt.Sprintf("lost the connection to %s: %v", node, err)})
	return false
}

// exitedAt is when the job exited; zero while it has not.
func (h *homeJob) exitedAt() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exitAt
}

func (h *homeJob) snapshot() api.JobInfo {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.info
}

// localSink is a stint whose home is this node.
type localSink struct {
	h     *homeJob
	epoch int
}

func (s localSink) output(t byte, data []byte) error {
	s.h.output(s.epoch, t, data)
	return nil
}

func (s localSink) end(exit *api.ExitStatus, ho handOver) error {
	if exit != nil {
		s.h.ranFor(exit.CPU)
	} else {
		s.h.ranFor(ho.CPU)
	}
	s.h.stintEnded(s.epoch, exit)
	if exit == nil {
		s.h.handedOver(s.epoch, ho)
	}
	return nil
}

// ranFor adds a stint's CPU time, in seconds, to the job's.
func (h *homeJob) ranFor(cpu float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cpu += time.Duration(cpu * float64(time.Second))
	h.tellLike()
}

// setLike sets the median CPU time of the jobs like this one that ended
// since it started, and tells the stint that runs it.
func (h *homeJob) setLike(d time.Duration) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if d != h.like {
		h.like = d
		h.tellLike()
	}
}

// tellLike tells the current stint what its node's balancer needs to
// know how much work the job has left (likeInfo), once jobs like it have
// ended. h.mu is held.
func (h *homeJob) tellLike() {
	if h.like <= 0 || h.control == nil || h.exit != nil {
		return
	}
	b, _ := json.Marshal(likeInfo{Like: h.like.Seconds(), Used: h.cpu.Seconds()})
	h.control(api.Frame{Type: FrameLike, Data: b})
}

// current reports whether stint epoch is the newest that started.
func (h *homeJob) current(epoch int) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.newest == epoch && h.epoch == epoch
}
