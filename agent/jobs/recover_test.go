package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// recordingClient keeps what a terminal was sent.
type recordingClient struct {
	mu       sync.Mutex
	out, err strings.Builder
}

func (c *recordingClient) Write(t byte, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch t {
	case api.FrameStdout:
		c.out.Write(data)
	case api.FrameStderr:
		c.err.Write(data)
	}
	return nil
}

func notice(t *testing.T, ci api.CheckpointInfo) []byte {
	t.Helper()
	b, err := json.Marshal(checkpointNotice{CheckpointInfo: ci})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A job checkpointed after "1\n2\n", moved once, then recovered after its
// node died having sent up to "5\n": the restored job writes "3\n" to "5\n"
// again, which the terminal must not see twice, then goes on.
func TestRecoveryShowsOutputOnce(t *testing.T) {
	var dropped []string
	var mu sync.Mutex
	h := newHomeJob(func(f func()) { f() }, api.JobInfo{ID: "d1-1"})
	h.dropDir = func(dir string) { mu.Lock(); dropped = append(dropped, dir); mu.Unlock() }
	c := &recordingClient{}
	h.attach(c)
	h.runsOn(1, "a", 10, func(api.Frame) {}, "")
	h.output(1, api.FrameStdout, []byte("1\n"))
	h.output(1, api.FrameStdout, []byte("2\n"))
	h.output(1, api.FrameStderr, []byte("warn\n"))
	// The first checkpoint, then a newer one of the same stint.
	h.output(1, api.FrameCheckpoint, notice(t, api.CheckpointInfo{Dir: "/c/d1-1/ckpt-1-1", Epoch: 1, Seq: 1, Out: 2}))
	h.output(1, api.FrameCheckpoint, notice(t, api.CheckpointInfo{Dir: "/c/d1-1/ckpt-1-2", Epoch: 1, Seq: 2, Out: 4, Err: 5}))
	if len(dropped) != 1 || dropped[0] != "/c/d1-1/ckpt-1-1" {
		t.Fatalf("the older checkpoint should go once the newer is known: dropped %v", dropped)
	}
	// The job moves to b (stint 2) and writes on there.
	h.output(1, api.FrameStdout, []byte("3\n"))
	h.stintEnded(1, nil)
	h.runsOn(2, "b", 11, func(api.Frame) {}, "balancer")
	h.output(2, api.FrameStdout, []byte("4\n5\n"))
	if h.snapshot().Checkpoint.Seq != 2 {
		t.Fatalf("checkpoint = %+v", h.snapshot().Checkpoint)
	}
	// b dies.
	ci, epoch, skip, ok := h.startRecovery("b")
	if !ok || ci.Seq != 2 || epoch != 3 || skip != [2]int64{6, 0} {
		t.Fatalf("startRecovery = %+v, %d, %v, %v; want seq 2, stint 3, skip [6 0]", ci, epoch, skip, ok)
	}
	if _, _, _, again := h.startRecovery("b"); again {
		t.Fatal("a second recovery started while the first is under way")
	}
	// b was only cut off: what it still sends is dropped.
	h.output(2, api.FrameStdout, []byte("6\n"))
	h.recovered("c", "b", ci, 0)
	h.runsOn(3, "c", 12, func(api.Frame) {}, "recovered")
	h.output(3, api.FrameStdout, []byte("3\n4"))
	h.output(3, api.FrameStdout, []byte("\n5\n6\n"))
	h.output(3, api.FrameStdout, []byte("7\n"))
	h.stintEnded(3, &api.ExitStatus{})
	if got, want := c.out.String(), "1\n2\n3\n4\n5\n6\n7\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if !strings.Contains(c.err.String(), "recovered on c") {
		t.Errorf("stderr = %q: want the recovery line", c.err.String())
	}
	if info := h.snapshot(); info.State != api.JobExited || !strings.Contains(info.Recovered, "recovered on c") {
		t.Errorf("info = %+v", info)
	}
}

// A job with no checkpoint is not recovered; a notice of why there is none
// shows in its record.
func TestNoCheckpointNoRecovery(t *testing.T) {
	h := newHomeJob(func(f func()) { f() }, api.JobInfo{ID: "d1-2"})
	h.runsOn(1, "a", 10, func(api.Frame) {}, "")
	b, _ := json.Marshal(checkpointNotice{Note: "cannot be checkpointed: /tmp/x"})
	h.output(1, api.FrameCheckpoint, b)
	if got := h.snapshot().NoCheckpoint; got != "cannot be checkpointed: /tmp/x" {
		t.Fatalf("NoCheckpoint = %q", got)
	}
	if _, _, _, ok := h.startRecovery("a"); ok {
		t.Fatal("recovery started with no checkpoint")
	}
	if !h.nodeGone("a") {
		t.Fatal("nodeGone did not end the job")
	}
	if e := h.exit; e == nil || e.Code != 255 || !strings.Contains(e.Error, "/tmp/x") {
		t.Fatalf("exit = %+v: want 255 naming why there was no checkpoint", e)
	}
}

// A node rebooted (its StateDir, in memory, empty again) gives no id it
// gave before: the counter is kept on the shared storage too.
func TestIDsNotReusedAfterReboot(t *testing.T) {
	shared := t.TempDir()
	before := &Manager{Self: "drift-aaaaaa", StateDir: t.TempDir(), SharedRoot: shared}
	seen := map[string]bool{}
	for range idBlock + 3 { // past the first block reserved
		id, err := before.nextID()
		if err != nil {
			t.Fatal(err)
		}
		seen[id] = true
	}
	after := &Manager{Self: "drift-aaaaaa", StateDir: t.TempDir(), SharedRoot: shared}
	id, err := after.nextID()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("aaaaaa-%d", 2*idBlock+1); seen[id] || id != want {
		t.Fatalf("after a reboot the first id is %s; want %s, after the block reserved (gave %d ids before)", id, want, len(seen))
	}
	// The counter is written once per block, not once per id.
	b, err := os.ReadFile(filepath.Join(shared, ".drift", "homes", "drift-aaaaaa.seq"))
	if err != nil || strings.TrimSpace(string(b)) != fmt.Sprint(3*idBlock) {
		t.Fatalf("shared counter = %q, %v; want %d", b, err, 3*idBlock)
	}
}

// mortalPeers is a cluster in which nodes can be declared dead.
type mortalPeers struct {
	testPeers
	dead *sync.Map
}

func (p mortalPeers) Nodes() []string {
	var out []string
	for _, n := range p.testPeers.Nodes() {
		if _, d := p.dead.Load(n); !d {
			out = append(out, n)
		}
	}
	return out
}

func (p mortalPeers) Client(node string) (*api.Client, error) {
	if _, d := p.dead.Load(node); d {
		return nil, fmt.Errorf("%s is dead", node)
	}
	return p.testPeers.Client(node)
}

// The home of a job running elsewhere dies: the node it runs on becomes
// its home, and a terminal attached there sees the rest of its output and
// its exit status.
func TestHomeDiesJobRunsOn(t *testing.T) {
	dead := &sync.Map{}
	peers, ms := clusterWith(t, func(p testPeers) Peers { return mortalPeers{p, dead} }, "drift-aaaaaa", "drift-bbbbbb")
	a, _ := peers.Client("drift-aaaaaa")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var info api.JobInfo
	if err := a.Call(ctx, "POST", "/v1/jobs/run", api.RunRequest{JobSpec: api.JobSpec{
		Argv: []string{"sh", "-c", "echo one; sleep 3; echo two; exit 7"}, Node: "drift-bbbbbb"}, Detach: true}, &info); err != nil {
		t.Fatal(err)
	}
	for ms["drift-bbbbbb"].runnerOf(info.ID) == nil {
		time.Sleep(50 * time.Millisecond)
	}
	dead.Store("drift-aaaaaa", true) // a is declared dead
	b := ms["drift-bbbbbb"]
	deadline := time.Now().Add(5 * time.Second)
	for b.homeJobs()[info.ID] == nil {
		if time.Now().After(deadline) {
			t.Fatalf("drift-bbbbbb did not take job %s over within 5 s of its home's death", info.ID)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := b.movedHome(info.ID); got != "drift-bbbbbb" {
		t.Errorf("the shared storage names %q as the job's home, want drift-bbbbbb", got)
	}
	bc, _ := peers.Client("drift-bbbbbb")
	att, err := bc.Stream(ctx, "/v1/jobs/"+info.ID+"/attach", struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	defer att.Close()
	var out, errOut strings.Builder
	for {
		f, err := att.Read()
		if err != nil {
			t.Fatalf("attach: stream ended without an exit: %v (stdout %q, stderr %q)", err, out.String(), errOut.String())
		}
		switch f.Type {
		case api.FrameStdout:
			out.Write(f.Data)
		case api.FrameStderr:
			errOut.Write(f.Data)
		case api.FrameExit:
			var st api.ExitStatus
			json.Unmarshal(f.Data, &st)
			if st.Code != 7 || !strings.Contains(out.String(), "two\n") || !strings.Contains(errOut.String(), "drift-bbbbbb is its home now") {
				t.Errorf("after the takeover: exit %+v, stdout %q, stderr %q; want 7, two, and the takeover said", st, out.String(), errOut.String())
			}
			if j := b.homeJobs()[info.ID].snapshot(); j.State != api.JobExited || j.Home != "drift-bbbbbb" {
				t.Errorf("record at the new home: %+v", j)
			}
			// The exited job is still found through the shared storage
			// while its new home keeps its record.
			time.Sleep(200 * time.Millisecond)
			if got := b.movedHome(info.ID); got != "drift-bbbbbb" {
				t.Errorf("after the exit the shared storage names %q as the job's home, want drift-bbbbbb", got)
			}
			return
		}
	}
}

// silentPeers is one live node whose discard answers with an error
// until it has been asked fails+1 times; it can leave the cluster.
type silentPeers struct {
	mu    sync.Mutex
	sock  string
	gone  bool
	asked int
}

func (p *silentPeers) Client(string) (*api.Client, error) { return api.Local(p.sock), nil }

func (p *silentPeers) Nodes() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return nil
	}
	return []string{"drift-bbbbbb"}
}

func serveDiscard(t *testing.T, p *silentPeers, fails int) {
	t.Helper()
	p.sock = filepath.Join(t.TempDir(), "api.sock")
	ln, err := net.Listen("unix", p.sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/jobs/aaaaaa-1/discard" {
			http.NotFound(w, r)
			return
		}
		p.mu.Lock()
		p.asked++
		n := p.asked
		p.mu.Unlock()
		if n <= fails {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		api.WriteJSON(w, map[string]bool{"ok": true})
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// A recovery goes on only once every live node has said it holds no
// copy of the job: a node that fails to answer is asked again, until it
// answers, leaves the cluster, or a held copy would have been killed.
func TestRecoveryWaitsForHeldCopiesDropped(t *testing.T) {
	defer func(d time.Duration) { dropHeldEvery = d }(dropHeldEvery)
	dropHeldEvery = 10 * time.Millisecond

	p := &silentPeers{}
	serveDiscard(t, p, 3)
	m := &Manager{Self: "drift-aaaaaa", Peers: p, StateDir: t.TempDir(), SharedRoot: t.TempDir()}
	m.init()
	m.dropHeld("drift-bbbbbb", "aaaaaa-1", time.Now().Add(time.Minute))
	if p.asked != 4 {
		t.Errorf("a node that failed 3 times was asked %d times; want 4 (until it answered)", p.asked)
	}

	p = &silentPeers{}
	serveDiscard(t, p, 1000)
	m.Peers = p
	go func() {
		time.Sleep(100 * time.Millisecond)
		p.mu.Lock()
		p.gone = true
		p.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() { m.dropHeld("drift-bbbbbb", "aaaaaa-1", time.Now().Add(time.Minute)); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("dropHeld still asks a node that left the cluster")
	}

	p = &silentPeers{}
	serveDiscard(t, p, 1000)
	m.Peers = p
	start := time.Now()
	m.dropHeld("drift-bbbbbb", "aaaaaa-1", start.Add(200*time.Millisecond))
	if took := time.Since(start); took > 5*time.Second || p.asked < 2 {
		t.Errorf("a node that never answers: asked %d times over %s; want several, ending at the deadline", p.asked, took)
	}
}
