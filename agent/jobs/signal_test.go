package jobs

import (
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func signalFrame(sig syscall.Signal) api.Frame {
	return api.Frame{Type: api.FrameSignal, Data: []byte{byte(sig)}}
}

// A signal that comes while the job moves is kept, not delivered to the
// copy being left; a failed move delivers it, and later ones go through.
func TestSignalKeptDuringMove(t *testing.T) {
	r, s := startStint(t, "sleep", "60")
	r.holdSignals()
	r.control(signalFrame(syscall.SIGTERM))
	select {
	case exit := <-s.ended:
		t.Fatalf("a signal sent during a move reached the copy being left: it exited %+v", exit)
	case <-time.After(500 * time.Millisecond):
	}
	if ho := r.handOver(); ho.Received != 1 || !slices.Equal(ho.Kept, []int{int(syscall.SIGTERM)}) {
		t.Errorf("hand-over during the move: %+v, want 1 received and SIGTERM kept", ho)
	}
	r.releaseSignals() // the move failed: the job runs here still
	select {
	case exit := <-s.ended:
		if exit == nil || exit.Signal != int(syscall.SIGTERM) {
			t.Errorf("after the failed move the job ended %+v, want by SIGTERM", exit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the signal kept during a move that failed was never delivered")
	}
}

// ctlLog records the frames a stint's control receives.
type ctlLog struct {
	mu   sync.Mutex
	sigs []int
}

func (c *ctlLog) ctl(f api.Frame) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f.Type == api.FrameSignal {
		c.sigs = append(c.sigs, int(f.Data[0]))
	}
}

func (c *ctlLog) got() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.sigs)
}

// The home sends again, to the job's next stint, every signal its last
// stint did not deliver: those it kept while the job moved, those that
// never reached it, and those sent between the two stints, in that order.
func TestSignalsFollowTheMove(t *testing.T) {
	for _, nextFirst := range []bool{false, true} {
		var ts tasks
		h := newHomeJob(ts.Go, api.JobInfo{ID: "aaaaaa-1"})
		var one, two ctlLog
		h.runsOn(1, "a", 10, one.ctl, "")
		for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGTERM, syscall.SIGINT} {
			if !h.send(signalFrame(sig)) {
				t.Fatalf("send %v to a running job: refused", sig)
			}
		}
		// Stint 1 received two of the three frames, delivered the first
		// and kept the second, as the job was moving.
		if nextFirst {
			h.runsOn(2, "b", 20, two.ctl, "")
		}
		h.stintEnded(1, nil)
		h.handedOver(1, handOver{Received: 2, Kept: []int{int(syscall.SIGTERM)}})
		if !nextFirst {
			h.send(signalFrame(syscall.SIGHUP)) // between the two stints
			h.runsOn(2, "b", 20, two.ctl, "")
		}
		ts.wait()
		want := []int{int(syscall.SIGTERM), int(syscall.SIGINT)}
		if !nextFirst {
			want = append(want, int(syscall.SIGHUP))
		}
		if got := two.got(); !slices.Equal(got, want) {
			t.Errorf("next stint started first %v: it got signals %v, want %v", nextFirst, got, want)
		}
		if got := one.got(); len(got) != 3 {
			t.Errorf("the first stint got %v, want the three signals sent to it", got)
		}
		// A stint that says nothing of its signals (an older agent) has
		// nothing sent again.
		h.send(signalFrame(syscall.SIGUSR2))
		h.stintEnded(2, nil)
		var three ctlLog
		h.runsOn(3, "c", 30, three.ctl, "")
		ts.wait()
		if got := three.got(); len(got) != 0 {
			t.Errorf("after a stint that handed nothing over, the next got %v, want nothing", got)
		}
	}
}
