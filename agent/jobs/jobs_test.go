package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/jobinit"
)

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == InitArg {
		os.Exit(jobinit.Run(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == "count-pidfds" {
		os.Exit(countPidfds())
	}
	os.Exit(m.Run())
}

// testPeers reaches in-process agents by their unix sockets.
type testPeers map[string]string

func (p testPeers) Client(node string) (*api.Client, error) {
	s, ok := p[node]
	if !ok {
		return nil, fmt.Errorf("no node %s", node)
	}
	return api.Local(s), nil
}

func (p testPeers) Nodes() []string {
	var out []string
	for n := range p {
		out = append(out, n)
	}
	return out
}

type noMembers struct{}

func (noMembers) Nodes(time.Time) []api.Node { return nil }

// cluster starts one Manager per name, each behind a real API server on a
// unix socket, and returns the sockets.
func cluster(t *testing.T, names ...string) testPeers {
	t.Helper()
	peers, _ := clusterManagers(t, names...)
	return peers
}

// clusterManagers is cluster that also returns each node's Manager.
func clusterManagers(t *testing.T, names ...string) (testPeers, map[string]*Manager) {
	t.Helper()
	return clusterWith(t, func(p testPeers) Peers { return p }, names...)
}

// clusterWith is clusterManagers with each Manager's Peers made by wrap.
func clusterWith(t *testing.T, wrap func(testPeers) Peers, names ...string) (testPeers, map[string]*Manager) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("jobs run in their own PID namespace: needs root")
	}
	peers, managers := testPeers{}, map[string]*Manager{}
	dir := t.TempDir()
	for _, n := range names {
		peers[n] = filepath.Join(dir, n+".sock")
	}
	for _, n := range names {
		m := &Manager{Self: n, Peers: wrap(peers), InitCmd: []string{os.Args[0], InitArg},
			SharedRoot: dir, StateDir: filepath.Join(dir, n)}
		managers[n] = m
		s := &api.Server{Cluster: noMembers{}, SocketPath: peers[n], TCPAddr: "-", Routes: m.Routes()}
		ls, err := s.Listen()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done, ran := make(chan error, 1), make(chan error, 1)
		go func() { done <- s.ServeListeners(ctx, ls) }()
		go func() { ran <- m.Run(ctx) }()
		t.Cleanup(func() {
			cancel()
			<-done
			select {
			case <-ran:
			case <-time.After(20 * time.Second):
				t.Errorf("%s: Manager.Run did not return 20 s after its context ended: a goroutine it owns is stuck", n)
			}
		})
	}
	return peers, managers
}

// transcript is what a terminal saw.
type transcript struct {
	info   api.JobInfo
	stdout strings.Builder
	stderr strings.Builder
	exit   api.ExitStatus
}

// runJob runs spec through node's agent like drift run, feeding stdin,
// and calls during(info) once the job is running.
func runJob(t *testing.T, peers testPeers, node string, spec api.JobSpec, stdin string, during func(api.JobInfo)) *transcript {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, _ := peers.Client(node)
	fc, err := c.Stream(ctx, "/v1/jobs/run", api.RunRequest{JobSpec: spec})
	if err != nil {
		t.Fatalf("run %q: %v", spec.Argv, err)
	}
	defer fc.Close()
	var tr transcript
	for {
		f, err := fc.Read()
		if err != nil {
			t.Fatalf("run %q: stream ended without an exit: %v (so far %q)", spec.Argv, err, tr.stdout.String())
		}
		switch f.Type {
		case api.FrameInfo:
			json.Unmarshal(f.Data, &tr.info)
			if stdin != "" {
				fc.Write(api.FrameStdin, []byte(stdin))
				fc.Write(api.FrameStdinEOF, nil)
			}
			if during != nil {
				go during(tr.info)
			}
		case api.FrameStdout:
			tr.stdout.Write(f.Data)
		case api.FrameStderr:
			tr.stderr.Write(f.Data)
		case api.FrameExit:
			json.Unmarshal(f.Data, &tr.exit)
			return &tr
		case api.FrameError:
			t.Fatalf("run %q: %s", spec.Argv, f.Data)
		}
	}
}

func TestRunLocalAndRemote(t *testing.T) {
	peers := cluster(t, "drift-aaaaaa", "drift-bbbbbb")
	for _, node := range []string{"", "drift-bbbbbb"} {
		t.Run("node="+node, func(t *testing.T) {
			tr := runJob(t, peers, "drift-aaaaaa", api.JobSpec{
				Argv: []string{"sh", "-c", "echo out $$; echo err >&2; cat; exit 3"}, Node: node,
			}, "from stdin\n", nil)
			var pid int
			if _, err := fmt.Sscanf(tr.stdout.String(), "out %d\nfrom stdin\n", &pid); err != nil || pid > 64 || !strings.HasSuffix(tr.stdout.String(), "\nfrom stdin\n") {
				t.Errorf("stdout = %q, want \"out PID\" with a small PID of the job's own namespace, then stdin", tr.stdout.String())
			}
			if tr.stderr.String() != "err\n" || tr.exit.Code != 3 {
				t.Errorf("stderr %q exit %+v, want err and code 3", tr.stderr.String(), tr.exit)
			}
			if !strings.HasPrefix(tr.info.ID, "aaaaaa-") || tr.info.Home != "drift-aaaaaa" {
				t.Errorf("job info %+v, want an id homed on drift-aaaaaa", tr.info)
			}
		})
	}
}

func TestSignalThroughHome(t *testing.T) {
	peers := cluster(t, "drift-aaaaaa", "drift-bbbbbb")
	tr := runJob(t, peers, "drift-aaaaaa", api.JobSpec{Argv: []string{"sleep", "30"}, Node: "drift-bbbbbb"}, "", func(info api.JobInfo) {
		// drift kill from a third place: the other node forwards to the home.
		c, _ := peers.Client("drift-bbbbbb")
		for range 50 {
			err := c.Call(context.Background(), http.MethodPost, "/v1/jobs/"+info.ID+"/signal", api.SignalRequest{Signal: int(syscall.SIGTERM)}, nil)
			if err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if tr.exit.Code != 128+int(syscall.SIGTERM) {
		t.Errorf("exit = %+v (stderr %q), want %d (SIGTERM)", tr.exit, tr.stderr.String(), 128+int(syscall.SIGTERM))
	}
}

func TestPSAndAttach(t *testing.T) {
	peers, managers := clusterManagers(t, "drift-aaaaaa", "drift-bbbbbb")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a, _ := peers.Client("drift-aaaaaa")
	var info api.JobInfo
	if err := a.Call(ctx, http.MethodPost, "/v1/jobs/run", api.RunRequest{JobSpec: api.JobSpec{
		Argv: []string{"sh", "-c", "echo one; read x; echo two $x"}, Node: "drift-bbbbbb"}, Detach: true}, &info); err != nil {
		t.Fatal(err)
	}
	var ps []api.JobInfo
	for range 50 {
		b, _ := peers.Client("drift-bbbbbb")
		res, err := b.PS(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ps = res.Jobs
		if len(ps) == 1 && ps[0].State == "running" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(ps) != 1 || ps[0].ID != info.ID || ps[0].Node != "drift-bbbbbb" || ps[0].Home != "drift-aaaaaa" || ps[0].State != "running" {
		t.Fatalf("ps = %+v, want job %s running on drift-bbbbbb, homed on drift-aaaaaa", ps, info.ID)
	}
	// While its runner moves it, every node lists it as migrating.
	rn := managers["drift-bbbbbb"].runnerOf(info.ID)
	rn.migrating.Store(true)
	for _, n := range []string{"drift-aaaaaa", "drift-bbbbbb"} {
		c, _ := peers.Client(n)
		if ps, err := c.PS(ctx); err != nil || len(ps.Jobs) != 1 || ps.Jobs[0].State != api.JobMigrating {
			t.Errorf("ps on %s during a move = %+v, %v; want the job migrating", n, ps, err)
		}
	}
	rn.migrating.Store(false)
	// Attach from the other node: it reaches the home, replays "one".
	b, _ := peers.Client("drift-bbbbbb")
	fc, err := b.Stream(ctx, "/v1/jobs/"+info.ID+"/attach", struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	var out strings.Builder
	for {
		f, err := fc.Read()
		if err != nil {
			t.Fatalf("attach: %v (so far %q)", err, out.String())
		}
		if f.Type == api.FrameInfo {
			fc.Write(api.FrameStdin, []byte("x\n"))
		}
		if f.Type == api.FrameStdout {
			out.Write(f.Data)
		}
		if f.Type == api.FrameExit {
			break
		}
		if f.Type == api.FrameError {
			t.Fatalf("attach: %s", f.Data)
		}
	}
	if out.String() != "one\ntwo x\n" {
		t.Errorf("attached output = %q, want %q", out.String(), "one\ntwo x\n")
	}
}

func TestHomeOf(t *testing.T) {
	for _, tt := range []struct {
		id, want string
		ok       bool
	}{{"d1b102-7", "drift-d1b102", true}, {"d1b102", "", false}, {"x-1", "", false}, {"d1b102-", "", false}} {
		got, err := api.JobHome(tt.id)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("HomeOf(%q) = %q, %v; want %q (ok %v)", tt.id, got, err, tt.want, tt.ok)
		}
	}
}

func TestIsMountPoint(t *testing.T) {
	if !isMountPoint("/proc") {
		t.Error("isMountPoint(/proc) = false, want true")
	}
	if isMountPoint(t.TempDir()) {
		t.Error("isMountPoint(a plain temp dir) = true, want false")
	}
}

// The job init runs its command at JobNice whichever of its threads
// starts it (Linux keeps a nice value per thread), also in its own PID
// namespace under the node's /proc, as jobs run.
func TestInitLowersPriority(t *testing.T) {
	for i := range 6 {
		cmd := exec.Command(os.Args[0], InitArg, "--", "cat", "/proc/self/stat")
		if i%2 == 1 {
			if os.Geteuid() != 0 {
				continue
			}
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID}
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil || stderr.Len() > 0 {
			t.Fatalf("job init: %v %s", err, stderr.String())
		}
		s := string(out)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 17 || f[16] != fmt.Sprint(JobNice) {
			t.Fatalf("the command ran at nice %q, want %d (/proc/self/stat: %s)", f[16], JobNice, s)
		}
	}
}

// A busy tree reads as busy, also when read twice in a row: the second
// reading repeats the rate instead of measuring a window too short for
// CPU ticks.
func TestCPUMeter(t *testing.T) {
	cmd := exec.Command("sh", "-c", "while :; do :; done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	start := time.Now()
	var m cpuMeter
	time.Sleep(1500 * time.Millisecond)
	first := m.read(cmd.Process.Pid, start)
	again := m.read(cmd.Process.Pid, start)
	if first.CPU < 0.3 || first.Demand < 0.9 || again != first || first.RSS == 0 {
		t.Errorf("busy loop: %+v then %+v, want CPU above 0.3, demand near 1, and the same twice", first, again)
	}
	// A sleeper wants nothing.
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	if u := m.read(sleeper.Process.Pid, time.Now().Add(-time.Second)); u.Demand > 0.1 {
		t.Errorf("sleep: %+v, want demand near 0", u)
	}
	m.forget(cmd.Process.Pid)
	if _, ok := m.last[cmd.Process.Pid]; ok {
		t.Error("forget kept the reading")
	}
}

// Stdin that reaches the home before the job's first stint has started is
// handed to that stint in order, not dropped.
func TestEarlyStdinKept(t *testing.T) {
	var ts tasks
	defer ts.wait()
	h := newHomeJob(ts.Go, api.JobInfo{ID: "x-1"})
	if !h.send(api.Frame{Type: api.FrameStdin, Data: []byte("a")}) || !h.send(api.Frame{Type: api.FrameStdinEOF}) {
		t.Fatal("stdin before the first stint was refused")
	}
	if h.send(api.Frame{Type: api.FrameSignal, Data: []byte{15}}) {
		t.Error("a signal before the first stint was taken")
	}
	var mu sync.Mutex
	var got []byte
	h.runsOn(1, "n", 1, func(f api.Frame) {
		mu.Lock()
		got = append(got, f.Type)
		mu.Unlock()
	}, "")
	h.send(api.Frame{Type: api.FrameSignal, Data: []byte{15}})
	mu.Lock()
	defer mu.Unlock()
	if want := []byte{api.FrameStdin, api.FrameStdinEOF, api.FrameSignal}; string(got) != string(want) {
		t.Errorf("the first stint got frames %q, want %q", got, want)
	}
}

// countPidfds starts a child with os/exec, as a Go program in a job would,
// and prints how many pidfds the process holds while the child runs.
func countPidfds() int {
	cmd := exec.Command("sleep", "1")
	if err := cmd.Start(); err != nil {
		fmt.Println(err)
		return 1
	}
	n := 0
	fds, _ := os.ReadDir("/proc/self/fd")
	for _, fd := range fds {
		if l, _ := os.Readlink("/proc/self/fd/" + fd.Name()); strings.Contains(l, "pidfd") {
			n++
		}
	}
	cmd.Wait()
	fmt.Printf("pidfds=%d\n", n)
	return 0
}

// TestInitRefusesPidfd: a Go program run by the job init keeps no pidfd
// for its children (CRIU 3.17 cannot checkpoint one), while the same
// program run directly does, on a kernel that has pidfd_open.
func TestInitRefusesPidfd(t *testing.T) {
	direct, err := exec.Command(os.Args[0], "count-pidfds").Output()
	if err != nil {
		t.Fatalf("count-pidfds: %v", err)
	}
	if strings.TrimSpace(string(direct)) == "pidfds=0" {
		t.Skip("this kernel gives Go no pidfds even outside a job")
	}
	var stderr strings.Builder
	cmd := exec.Command(os.Args[0], InitArg, "--", os.Args[0], "count-pidfds")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || stderr.Len() > 0 {
		t.Fatalf("job init: %v %s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != "pidfds=0" {
		t.Errorf("under the job init: %s, want pidfds=0 (directly: %s)", got, strings.TrimSpace(string(direct)))
	}
}

// TestNodePath checks that a job without a PATH finds the image's C
// programs (/usr/bin: busybox's applets, Debian packages) before u-root's
// Go tools in /bbin, which pin a job to its node.
func TestNodePath(t *testing.T) {
	dirs := strings.Split(NodePath, ":")
	index := func(d string) int {
		for i, x := range dirs {
			if x == d {
				return i
			}
		}
		t.Fatalf("NodePath %q lacks %s", NodePath, d)
		return -1
	}
	if !(index("/usr/local/bin") < index("/usr/bin") && index("/usr/bin") < index("/bin") && index("/bin") < index("/bbin")) {
		t.Errorf("NodePath = %q, want /usr/local/bin, /usr/bin, /bin, then /bbin", NodePath)
	}
}

// Manager.Run owns what the Manager started: when its context ends, the
// terminals close, the jobs running here are killed, and Run returns.
func TestRunEndsEverything(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("jobs run in their own PID namespace: needs root")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "a.sock")
	peers := testPeers{"drift-aaaaaa": sock}
	m := &Manager{Self: "drift-aaaaaa", Peers: peers, InitCmd: []string{os.Args[0], InitArg}, SharedRoot: dir, StateDir: dir}
	s := &api.Server{Cluster: noMembers{}, SocketPath: sock, TCPAddr: "-", Routes: m.Routes()}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	defer stopSrv()
	go s.ServeListeners(srvCtx, ls)
	runCtx, stopRun := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- m.Run(runCtx) }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := api.Local(sock)
	fc, err := c.Run(ctx, api.JobSpec{Argv: []string{"sleep", "300"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	f, err := fc.Read()
	if err != nil || f.Type != api.FrameInfo {
		t.Fatalf("first frame = %q, %v; want the job's info", f.Type, err)
	}
	for m.Load() == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	stopRun()
	select {
	case <-ran:
	case <-time.After(20 * time.Second):
		t.Fatal("Run did not return 20 s after its context ended")
	}
	if n := m.Load(); n != 0 {
		t.Errorf("after Run returned, %d jobs still run here", n)
	}
	for { // the terminal ends: with the job's exit, or closed
		if _, err := fc.Read(); err != nil {
			break
		}
	}
}

// A terminal that stops reading holds neither the job's home nor the
// node: drift ps, the node's load and signals go on, and the terminal is
// disconnected once it falls far enough behind.
func TestStalledTerminal(t *testing.T) {
	peers := cluster(t, "drift-aaaaaa")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, _ := peers.Client("drift-aaaaaa")
	fc, err := c.Run(ctx, api.JobSpec{Argv: []string{"yes", "a line of output that nobody reads"}})
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close() // never read after the first frame
	f, err := fc.Read()
	if err != nil || f.Type != api.FrameInfo {
		t.Fatalf("first frame = %q, %v; want the job's info", f.Type, err)
	}
	var info api.JobInfo
	json.Unmarshal(f.Data, &info)
	// Long enough for the socket's buffers to fill and the home to queue
	// megabytes for this terminal.
	time.Sleep(2 * time.Second)
	for i := range 3 {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		ps, err := c.PS(pctx)
		pcancel()
		if err != nil || len(ps.Jobs) != 1 {
			t.Fatalf("drift ps #%d while a terminal stalls = %v, %v; want the job listed at once", i, ps, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	sctx, scancel := context.WithTimeout(ctx, 5*time.Second)
	defer scancel()
	if err := c.Signal(sctx, info.ID, int(syscall.SIGKILL)); err != nil {
		t.Fatalf("kill while a terminal stalls: %v", err)
	}
	// Reading now: the backlog, then the end: either the job's exit or the
	// notice that this terminal fell behind.
	var last api.Frame
	for {
		f, err := fc.Read()
		if err != nil {
			break
		}
		last = f
	}
	if last.Type != api.FrameError || !strings.Contains(string(last.Data), "fell more than") {
		t.Errorf("the stalled terminal's last frame = %q %.80q, want the notice that it fell behind", last.Type, last.Data)
	}
}

// drift ps names the nodes it could not ask, rather than listing the
// cluster as if they had no jobs.
func TestPSNamesSilentNodes(t *testing.T) {
	peers := cluster(t, "drift-aaaaaa")
	peers["drift-cccccc"] = filepath.Join(t.TempDir(), "nobody-listens.sock")
	c, _ := peers.Client("drift-aaaaaa")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ps, err := c.PS(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Unanswered) != 1 || ps.Unanswered[0].Node != "drift-cccccc" || ps.Unanswered[0].Error == "" {
		t.Errorf("PS() unanswered = %+v, want drift-cccccc with why", ps.Unanswered)
	}
}

// A home forgets the jobs that exited long ago, and the oldest beyond
// what it keeps; running jobs stay whatever their age.
func TestForgetExited(t *testing.T) {
	now := time.Now()
	m := &Manager{Self: "drift-aaaaaa", Logger: slog.New(slog.DiscardHandler)}
	m.init()
	var ts tasks
	add := func(id string, exited time.Duration) {
		h := newHomeJob(ts.Go, api.JobInfo{ID: id})
		if exited > 0 {
			h.exitAt = now.Add(-exited)
		}
		m.homes[id] = h
	}
	add("aaaaaa-1", 0)                         // running for ever
	add("aaaaaa-2", keepExitedFor+time.Second) // exited too long ago
	add("aaaaaa-3", time.Minute)
	for i := range keepExitedMax + 1 { // with aaaaaa-3, two more than are kept: the oldest two go
		add(fmt.Sprintf("aaaaaa-%d", 10+i), time.Duration(keepExitedMax+10-i)*time.Second)
	}
	m.forgetExited(now)
	for id, want := range map[string]bool{"aaaaaa-1": true, "aaaaaa-2": false, "aaaaaa-3": true, "aaaaaa-10": false, "aaaaaa-11": false, "aaaaaa-12": true} {
		if _, ok := m.homes[id]; ok != want {
			t.Errorf("after forgetExited, %s kept = %v, want %v", id, ok, want)
		}
	}
	if n := len(m.homes); n != keepExitedMax+1 {
		t.Errorf("after forgetExited %d records, want %d (the kept exited ones and the running one)", n, keepExitedMax+1)
	}
}

// A job whose stint ended as moved and whose next stint never started is
// reported lost after a while; one whose next stint started first is not.
func TestLostInMove(t *testing.T) {
	var ts tasks
	defer ts.wait()
	ctl := func(api.Frame) {}
	for _, tt := range []struct {
		name     string
		events   func(h *homeJob)
		after    time.Duration
		wantLost bool
	}{
		{"next stint never starts", func(h *homeJob) { h.stintEnded(1, nil) }, time.Hour, true},
		{"not yet", func(h *homeJob) { h.stintEnded(1, nil) }, time.Second, false},
		{"next stint starts after", func(h *homeJob) { h.stintEnded(1, nil); h.runsOn(2, "drift-bbbbbb", 2, ctl, "") }, time.Hour, false},
		{"next stint starts first", func(h *homeJob) { h.runsOn(2, "drift-bbbbbb", 2, ctl, ""); h.stintEnded(1, nil) }, time.Hour, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := newHomeJob(ts.Go, api.JobInfo{ID: "aaaaaa-1"})
			h.runsOn(1, "drift-aaaaaa", 1, ctl, "")
			tt.events(h)
			if got := h.lostInMove(time.Now().Add(tt.after), time.Minute); got != tt.wantLost {
				t.Errorf("lostInMove after %s = %v, want %v", tt.after, got, tt.wantLost)
			}
			if tt.wantLost && (h.exit == nil || h.exit.Code != 255 || !strings.Contains(h.exit.Error, "lost in a move")) {
				t.Errorf("a job lost in a move ended with %+v, want 255 and why", h.exit)
			}
		})
	}
}

// The job runs in the directory it was started in, with a relative
// command too; its init waits in /, so that CRIU's scratch directory
// for a dump is made on the node, never on the shared storage.
func TestInitWorkingDirectories(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"$PWD\"; readlink /proc/$PPID/cwd\n"
	if err := os.WriteFile(filepath.Join(dir, "where"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], InitArg, "--", "./where")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("job init: %v %s", err, stderr.String())
	}
	if got, want := string(out), dir+"\n/\n"; got != want {
		t.Errorf("the job's and its init's directories: %q, want %q", got, want)
	}
	// As the agent starts it: from /, told the job's directory.
	cmd = exec.Command(os.Args[0], InitArg, "--dir="+dir, "--", "./where")
	cmd.Dir = "/"
	stderr.Reset()
	cmd.Stderr = &stderr
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("job init --dir: %v %s", err, stderr.String())
	}
	if got, want := string(out), dir+"\n/\n"; got != want {
		t.Errorf("with --dir, the job's and its init's directories: %q, want %q", got, want)
	}
	// A command that is not there: 127 and why.
	cmd = exec.Command(os.Args[0], InitArg, "--dir="+dir, "--", "./nowhere")
	stderr.Reset()
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 127 || !strings.Contains(stderr.String(), "nowhere") {
		t.Errorf("job init of a missing command: %v, stderr %q; want 127 and its name", err, stderr.String())
	}
}

// onlyAlive is a cluster in which only some nodes are alive.
type onlyAlive []string

func (onlyAlive) Client(node string) (*api.Client, error) { return nil, fmt.Errorf("no client") }
func (a onlyAlive) Nodes() []string                       { return a }

// A job whose node the cluster declares dead ends at once, with 255 and
// why; one that runs on a live node, here, or that had moved away from
// the dead node, does not.
func TestNodeGone(t *testing.T) {
	var ts tasks
	defer ts.wait()
	ctl := func(api.Frame) {}
	m := &Manager{Self: "drift-aaaaaa", Peers: onlyAlive{"drift-aaaaaa", "drift-bbbbbb"}}
	m.init()
	jobs := map[string]func(h *homeJob){
		"aaaaaa-1": func(h *homeJob) { h.runsOn(1, "drift-cccccc", 10, ctl, "") },                       // on the dead node
		"aaaaaa-2": func(h *homeJob) { h.runsOn(1, "drift-bbbbbb", 10, ctl, "") },                       // on a live one
		"aaaaaa-3": func(h *homeJob) { h.runsOn(1, "drift-aaaaaa", 10, ctl, "") },                       // here
		"aaaaaa-4": func(h *homeJob) { h.runsOn(1, "drift-cccccc", 10, ctl, ""); h.stintEnded(1, nil) }, // left it
	}
	for id, ev := range jobs {
		h := newHomeJob(ts.Go, api.JobInfo{ID: id})
		ev(h)
		m.homes[id] = h
	}
	m.findGone()
	for id := range jobs {
		info := m.homes[id].snapshot()
		ended := info.State == api.JobExited
		if want := id == "aaaaaa-1"; ended != want {
			t.Errorf("job %s on %s ended: %v, want %v", id, info.Node, ended, want)
		}
	}
	if e := m.homes["aaaaaa-1"].exit; e == nil || e.Code != 255 || !strings.Contains(e.Error, "drift-cccccc, where the job ran, died") {
		t.Errorf("the job on the dead node ended with %+v, want 255 and why", e)
	}
}

// A stint's stream that breaks ends the job, unless the job's next
// stint has started: then the job lives on.
func TestStreamLost(t *testing.T) {
	var ts tasks
	defer ts.wait()
	ctl := func(api.Frame) {}
	h := newHomeJob(ts.Go, api.JobInfo{ID: "aaaaaa-1"})
	h.runsOn(1, "drift-bbbbbb", 10, ctl, "")
	h.runsOn(2, "drift-cccccc", 10, ctl, "")
	if !h.streamLost(1, "drift-bbbbbb", io.ErrUnexpectedEOF) || h.exit != nil || h.snapshot().Node != "drift-cccccc" {
		t.Fatalf("after the old stint's stream broke: exit %+v, node %s; want the job running on drift-cccccc", h.exit, h.snapshot().Node)
	}
	if h.streamLost(2, "drift-cccccc", io.ErrUnexpectedEOF) || h.exit == nil || h.exit.Code != 255 {
		t.Errorf("after the running stint's stream broke: exit %+v, want 255", h.exit)
	}
}

// A job started waiting for a core counts in no load until SetWaiting
// clears it; Residents say which jobs wait.
func TestWaitingJobCountsInNoLoad(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("jobs run in their own PID namespace: needs root")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "a.sock")
	m := &Manager{Self: "drift-aaaaaa", Peers: testPeers{"drift-aaaaaa": sock}, InitCmd: []string{os.Args[0], InitArg}, SharedRoot: dir, StateDir: dir}
	s := &api.Server{Cluster: noMembers{}, SocketPath: sock, TCPAddr: "-", Routes: m.Routes()}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go s.ServeListeners(ctx, ls)
	ran := make(chan error, 1)
	go func() { ran <- m.Run(ctx) }()
	defer func() { cancel(); <-ran }() // kills the jobs
	c := api.Local(sock)
	waiting, err := c.RunDetached(ctx, api.JobSpec{Argv: []string{"sleep", "300"}, Waiting: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunDetached(ctx, api.JobSpec{Argv: []string{"sleep", "300"}}); err != nil {
		t.Fatal(err)
	}
	for len(m.Residents()) < 2 && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	if n := m.Load(); n != 1 {
		t.Errorf("Load = %d with one job running and one waiting, want 1", n)
	}
	for _, r := range m.Residents() {
		if r.Waiting != (r.ID == waiting.ID) {
			t.Errorf("resident %s: Waiting = %v", r.ID, r.Waiting)
		}
	}
	m.SetWaiting(waiting.ID, false)
	if n := m.Load(); n != 2 {
		t.Errorf("Load = %d once the waiting job may run, want 2", n)
	}
	m.SetWaiting(waiting.ID, true)
	if n := m.Load(); n != 1 {
		t.Errorf("Load = %d once it waits again, want 1", n)
	}
}
