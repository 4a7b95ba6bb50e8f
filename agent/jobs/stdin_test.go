package jobs

import (
	"bytes"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// bufSink keeps what a stint writes and how it ended.
type bufSink struct {
	mu    sync.Mutex
	out   bytes.Buffer
	ended chan *api.ExitStatus
}

func (s *bufSink) output(t byte, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.out.Write(data)
	return nil
}

func (s *bufSink) end(exit *api.ExitStatus, ho handOver) error { s.ended <- exit; return nil }

// startCat runs a job that reads its stdin only after a while, and copies
// it to its stdout.
func startCat(t *testing.T) (*runner, *bufSink) {
	return startStint(t, "sh", "-c", "sleep 1; exec cat")
}

// startStint runs argv as a job's stint, whose end the returned sink
// receives; the test's end kills it.
func startStint(t *testing.T, argv ...string) (*runner, *bufSink) {
	t.Helper()
	p, err := newPipes()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = p.jobIn, p.jobOut, p.jobErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &bufSink{ended: make(chan *api.ExitStatus, 1)}
	r := newRunner("aaaaaa-1", 1, cmd.Process.Pid, p, waitCmd(cmd), s, slog.Default())
	t.Cleanup(func() { cmd.Process.Kill(); <-r.done })
	return r, s
}

func (s *bufSink) wait(t *testing.T) string {
	t.Helper()
	select {
	case <-s.ended:
	case <-time.After(20 * time.Second):
		t.Fatal("the job did not end once its stdin did")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// While a job is frozen for a move, what it has not read of its stdin is
// copied for the next stint and left in its pipe, and the home's frames
// are kept; the next stint gets both, in order, with the end.
func TestStdinHeldForMove(t *testing.T) {
	r, _ := startCat(t)
	r.control(api.Frame{Type: api.FrameStdin, Data: []byte("unread\n")})
	r.holdStdin()
	r.control(api.Frame{Type: api.FrameStdin, Data: []byte("later\n")})
	r.control(api.Frame{Type: api.FrameStdinEOF})
	in, eof := r.heldStdin()
	if string(in) != "unread\nlater\n" || !eof {
		t.Fatalf("stdin held for the next stint: %q, end %v; want %q and the end", in, eof, "unread\nlater\n")
	}

	// The next stint, fed with it, reads it all, then its end.
	next, s := startCat(t)
	next.feedStdin(in, eof)
	next.control(api.Frame{Type: api.FrameStdin, Data: []byte("too late\n")}) // after the end: dropped
	if got := s.wait(t); got != "unread\nlater\n" {
		t.Errorf("the next stint read %q, want %q", got, "unread\nlater\n")
	}
}

// A move that fails lets the kept frames through after what the pipe
// still holds: the job reads everything once, in order.
func TestStdinReleasedAfterFailedMove(t *testing.T) {
	r, s := startCat(t)
	r.control(api.Frame{Type: api.FrameStdin, Data: []byte("unread\n")})
	r.holdStdin()
	r.control(api.Frame{Type: api.FrameStdin, Data: []byte("later\n")})
	r.control(api.Frame{Type: api.FrameStdinEOF})
	r.releaseStdin()
	r.control(api.Frame{Type: api.FrameStdin, Data: []byte("too late\n")})
	if got := s.wait(t); got != "unread\nlater\n" {
		t.Errorf("after a failed move the job read %q, want %q", got, "unread\nlater\n")
	}
}

// frames is a terminal that keeps what it is sent.
type frames []api.Frame

func (f *frames) Write(t byte, data []byte) error {
	*f = append(*f, api.Frame{Type: t, Data: data})
	return nil
}

// Output kept while no terminal is attached is bounded; the terminal
// that attaches then is told how much was dropped, before what was kept.
func TestBacklogDropMarked(t *testing.T) {
	var ts tasks
	defer ts.wait()
	h := newHomeJob(ts.Go, api.JobInfo{ID: "aaaaaa-1"})
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 20 { // 1.25 MiB
		h.output(1, api.FrameStdout, chunk)
	}
	var got frames
	h.attach(&got)
	if len(got) == 0 || got[0].Type != api.FrameStderr || !bytes.Contains(got[0].Data, []byte("bytes of the job's output before this were dropped")) {
		t.Fatalf("first frame to a terminal attached after output was dropped: %+v", got[:min(len(got), 1)])
	}
	kept := 0
	for _, f := range got[1:] {
		kept += len(f.Data)
	}
	if want := fmt.Sprintf("drift: %d bytes", 20*len(chunk)-kept); !bytes.HasPrefix(got[0].Data, []byte(want)) || kept > backlogMax {
		t.Errorf("marker %q with %d bytes kept; want it to start %q and at most %d kept", got[0].Data, kept, want, backlogMax)
	}
	// Attached again, nothing more was dropped: no marker.
	h.detach(&got)
	var again frames
	h.output(1, api.FrameStdout, []byte("more\n"))
	h.attach(&again)
	if len(again) != 1 || string(again[0].Data) != "more\n" {
		t.Errorf("second attach got %+v, want only the new output", again)
	}
}

// Every terminal that attaches to a job that has ended gets its kept
// output and its exit status: the first, the next, and one that attaches
// after a terminal saw the job end.
func TestAttachAfterTheEnd(t *testing.T) {
	var ts tasks
	defer ts.wait()
	exitOf := func(got frames) string {
		for _, f := range got {
			if f.Type == api.FrameExit {
				return string(f.Data)
			}
		}
		return ""
	}
	h := newHomeJob(ts.Go, api.JobInfo{ID: "aaaaaa-1"})
	h.runsOn(1, "a", 10, func(api.Frame) {}, "")
	h.output(1, api.FrameStdout, []byte("out\n"))
	h.stintEnded(1, &api.ExitStatus{Code: 3})
	for i := range 2 {
		var got frames
		if h.attach(&got) {
			t.Fatalf("attach %d to an ended job kept the terminal attached", i+1)
		}
		if len(got) == 0 || string(got[0].Data) != "out\n" || !strings.Contains(exitOf(got), `"code":3`) {
			t.Errorf("attach %d to an ended job got %+v, want its output and exit 3", i+1, got)
		}
	}
	// A terminal was attached when the job ended: the next gets the exit too.
	h2 := newHomeJob(ts.Go, api.JobInfo{ID: "aaaaaa-2"})
	h2.runsOn(1, "a", 11, func(api.Frame) {}, "")
	var first frames
	h2.attach(&first)
	h2.stintEnded(1, &api.ExitStatus{Code: 143})
	var later frames
	h2.attach(&later)
	if !strings.Contains(exitOf(first), `"code":143`) || !strings.Contains(exitOf(later), `"code":143`) {
		t.Errorf("exit seen by the terminal attached at the end %q, by the next %q; want 143 for both", exitOf(first), exitOf(later))
	}
}
