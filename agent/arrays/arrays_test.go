package arrays

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/taskexec"
)

// The test binary is also the tasks' wrapper: drift-job task-exec.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == TaskArg {
		os.Exit(taskexec.Run(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// node is one node's job manager, as far as the service sees it: it runs
// each job as a real process (the wrapper, then the command).
type node struct {
	name string
	mu   sync.Mutex
	jobs map[string]*api.JobInfo
	cmds map[string]*exec.Cmd
	seq  int
	wait map[string]bool // jobs that wait for a core
}

func newNode(name string) *node {
	return &node{name: name, jobs: map[string]*api.JobInfo{}, cmds: map[string]*exec.Cmd{}}
}

func (n *node) Brief() []api.JobInfo { return n.Local() }

func (n *node) Local() []api.JobInfo {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []api.JobInfo
	for _, j := range n.jobs {
		out = append(out, *j)
	}
	return out
}

// Load counts the running jobs that do not wait for a core.
func (n *node) Load() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := 0
	for id, j := range n.jobs {
		if j.State == api.JobRunning && !n.wait[id] {
			l++
		}
	}
	return l
}

// Running counts the running jobs, waiting ones included.
func (n *node) Running() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	l := 0
	for _, j := range n.jobs {
		if j.State == api.JobRunning {
			l++
		}
	}
	return l
}

func (n *node) SetWaiting(id string, waiting bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.wait == nil {
		n.wait = map[string]bool{}
	}
	n.wait[id] = waiting
}

func (n *node) RunDetached(ctx context.Context, spec api.JobSpec) (api.JobInfo, error) {
	n.mu.Lock()
	n.seq++
	id := fmt.Sprintf("%s-%d", strings.TrimPrefix(n.name, "drift-"), n.seq)
	n.mu.Unlock()
	cmd := exec.Command(os.Args[0], spec.Argv[1:]...) // the wrapper is this test binary
	cmd.Env = append(os.Environ(), spec.Env...)
	cmd.Dir = spec.Dir
	if err := cmd.Start(); err != nil {
		return api.JobInfo{}, err
	}
	info := &api.JobInfo{ID: id, Name: spec.Name, Node: n.name, Home: n.name, State: api.JobRunning, Argv: spec.Argv, PID: cmd.Process.Pid}
	n.mu.Lock()
	n.jobs[id], n.cmds[id] = info, cmd
	if spec.Waiting {
		if n.wait == nil {
			n.wait = map[string]bool{}
		}
		n.wait[id] = true
	}
	started := *info
	n.mu.Unlock()
	go func() {
		cmd.Wait()
		code := cmd.ProcessState.ExitCode()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		n.mu.Lock()
		info.State, info.Exit = api.JobExited, &code
		n.mu.Unlock()
	}()
	return started, nil
}

func (n *node) Signal(ctx context.Context, id string, sig int) error {
	n.mu.Lock()
	cmd := n.cmds[id]
	n.mu.Unlock()
	if cmd == nil {
		return fmt.Errorf("no job %s", id)
	}
	return cmd.Process.Signal(syscall.Signal(sig))
}

func (n *node) PS(ctx context.Context) (api.PSResult, error) {
	return api.PSResult{Jobs: n.Local()}, nil
}

// stopAll kills every job of n and waits until each has exited, so that
// none writes into a test's directory as it is removed.
func (n *node) stopAll(t *testing.T) {
	t.Helper()
	for _, j := range n.Local() {
		n.Signal(context.Background(), j.ID, int(syscall.SIGKILL))
	}
	deadline := time.Now().Add(10 * time.Second)
	for n.Running() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%s: jobs still running 10 s after SIGKILL", n.name)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type lab struct {
	root  string
	alive map[string]bool
	mu    sync.Mutex
	svcs  []*Service
	nodes []*node
}

func newLab(t *testing.T, names []string, cores int) *lab {
	l := &lab{root: t.TempDir(), alive: map[string]bool{}}
	for _, name := range names {
		n := newNode(name)
		l.alive[name] = true
		l.nodes = append(l.nodes, n)
		l.svcs = append(l.svcs, &Service{
			Self: name, SharedRoot: l.root, Jobs: n, Agent: n, Cores: cores,
			Alive: func() []string {
				l.mu.Lock()
				defer l.mu.Unlock()
				var out []string
				for n, ok := range l.alive {
					if ok {
						out = append(out, n)
					}
				}
				return out
			},
			MemAvailable: func() uint64 { return 8 << 30 },
			TaskCmd:      []string{"wrapper", TaskArg},
		})
	}
	return l
}

// run ticks every live node's service until every task has ended.
func (l *lab) run(t *testing.T, id string, check func()) api.ArrayInfo {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range l.svcs {
			l.mu.Lock()
			ok := l.alive[s.Self]
			l.mu.Unlock()
			if ok {
				if err := s.Tick(context.Background()); err != nil {
					t.Fatalf("Tick on %s: %v", s.Self, err)
				}
			}
		}
		if check != nil {
			check()
		}
		info, err := l.svcs[len(l.svcs)-1].Array(id)
		if err != nil {
			t.Fatal(err)
		}
		if info.Finished() {
			return info
		}
		time.Sleep(50 * time.Millisecond)
	}
	info, _ := l.svcs[0].Array(id)
	t.Fatalf("array %s did not finish: %+v", id, info)
	return info
}

func TestArrayRunsEveryTaskOnce(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb", "drift-cccccc"}, 2)
	work := t.TempDir()
	spec := api.ArraySpec{Argv: []string{"sh", "-c", "echo task {} of $DRIFT_ARRAY $DRIFT_TASK in $(pwd); sleep 0.2"}, Range: "1-12", Dir: work}
	info, err := l.svcs[0].Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	if !api.IsArrayID(info.ID) || info.Tasks != 12 || info.Queued != 12 {
		t.Fatalf("Submit = %+v, want a-aaaaaa-1 with 12 queued tasks", info)
	}
	maxLoad, maxRunning := 0, 0
	info = l.run(t, info.ID, func() {
		for _, n := range l.nodes {
			maxLoad, maxRunning = max(maxLoad, n.Load()), max(maxRunning, n.Running())
		}
	})
	if info.Done != 12 || info.Failed != 0 {
		t.Errorf("finished with %+v, want 12 done", info)
	}
	if maxLoad > 2 || maxRunning != 3 {
		t.Errorf("a node ran at most %d tasks at once and held %d, want 2 running (its cores) and 3 held (one started ahead)", maxLoad, maxRunning)
	}
	for i := 1; i <= 12; i++ {
		b, err := os.ReadFile(filepath.Join(info.Dir, strconv.Itoa(i)+".out"))
		want := fmt.Sprintf("task %d of %s %d in %s\n", i, info.ID, i, work)
		if err != nil || string(b) != want {
			t.Errorf("task %d output = %q, %v; want %q", i, b, err, want)
		}
	}
	sum, err := os.ReadFile(filepath.Join(info.Dir, "summary.csv"))
	if err != nil || strings.Count(string(sum), ",done,") != 12 {
		t.Errorf("summary.csv = %q, %v; want 12 done lines", sum, err)
	}
	st, _ := l.svcs[1].Tasks(info.ID)
	for _, task := range st.List {
		if task.Attempts != 1 || task.PeakRSS == 0 {
			t.Errorf("task %s: %d attempts, peak RSS %d; want 1 attempt and a peak RSS", task.Task, task.Attempts, task.PeakRSS)
		}
	}
	for _, n := range l.nodes {
		if n.seq == 0 {
			t.Errorf("%s ran no task, want them spread over the nodes", n.name)
		}
	}
	// Once a node knows the summary is written, it keeps nothing of the
	// tasks' claims and results.
	for _, svc := range l.svcs {
		if err := svc.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		svc.mu.Lock()
		for _, m := range []int{len(svc.results), len(svc.claims), len(svc.claimTimes), len(svc.claimsRead)} {
			if m != 0 {
				t.Errorf("%s keeps %d results, %d claims, %d claim times and %d claim reads of a finished array", svc.Self, len(svc.results), len(svc.claims), len(svc.claimTimes), len(svc.claimsRead))
				break
			}
		}
		svc.mu.Unlock()
	}
}

func TestArrayFileRetriesAndFailures(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 2)
	// Line "ok x": succeeds. "flaky F": fails the first time (F missing), then succeeds. "bad": always fails.
	flag := filepath.Join(t.TempDir(), "flag")
	spec := api.ArraySpec{
		Argv:    []string{"sh", "-c", `case {1} in ok) echo {2};; flaky) test -e {2} || { touch {2}; exit 3; }; echo again;; *) exit 7;; esac`},
		Lines:   []string{"ok x", "flaky " + flag, "bad 1"},
		Retries: 1,
	}
	info, err := l.svcs[0].Submit(spec)
	if err != nil {
		t.Fatal(err)
	}
	info = l.run(t, info.ID, nil)
	if info.Done != 2 || info.Failed != 1 {
		t.Errorf("finished with %d done, %d failed; want 2 and 1", info.Done, info.Failed)
	}
	st, _ := l.svcs[0].Tasks(info.ID)
	want := []struct {
		state    string
		attempts int
		exit     int
	}{{api.TaskDone, 1, 0}, {api.TaskDone, 2, 0}, {api.TaskFailed, 2, 7}}
	for i, w := range want {
		got := st.List[i]
		if got.State != w.state || got.Attempts != w.attempts || got.Exit == nil || *got.Exit != w.exit {
			b, _ := os.ReadFile(got.Stderr)
			t.Errorf("task %s = %s after %d attempts, exit %d (%s, stderr %q); want %s after %d, exit %d", got.Task, got.State, got.Attempts, deref(got.Exit), got.Error, b, w.state, w.attempts, w.exit)
		}
	}
	if st.List[1].Node == "" {
		t.Errorf("task 2 ran nowhere")
	}
}

func TestArrayTasksOfADeadNodeRunAgain(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 1)
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 1; echo {}"}, Range: "1-4"})
	if err != nil {
		t.Fatal(err)
	}
	killed, lost := false, 0
	info = l.run(t, info.ID, func() {
		if killed {
			return
		}
		for _, j := range l.nodes[0].Local() {
			if j.State == api.JobRunning {
				lost++ // its running task, and one waiting ahead of it
				// The submitting node dies with its task.
				l.nodes[0].Signal(context.Background(), j.ID, int(syscall.SIGKILL))
				l.mu.Lock()
				l.alive["drift-aaaaaa"] = false
				l.mu.Unlock()
				killed = true
				// Its jobs are gone from the cluster's view with it.
				l.nodes[0].mu.Lock()
				l.nodes[0].jobs = map[string]*api.JobInfo{}
				l.nodes[0].mu.Unlock()
			}
		}
	})
	if !killed {
		t.Fatal("no task ran on the first node")
	}
	if info.Done != 4 {
		t.Errorf("finished with %+v, want 4 done", info)
	}
	st, _ := l.svcs[1].Tasks(info.ID)
	attempts := 0
	for _, task := range st.List {
		attempts += task.Attempts
	}
	if attempts != 4+lost {
		t.Errorf("%d attempts in all, want %d: the %d lost tasks once more", attempts, 4+lost, lost)
	}
}

func TestArrayKill(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa"}, 1)
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sleep", "30"}, Range: "1-3"})
	if err != nil {
		t.Fatal(err)
	}
	l.svcs[0].Tick(context.Background())
	if _, err := l.svcs[0].Kill(info.ID); err != nil {
		t.Fatal(err)
	}
	info = l.run(t, info.ID, nil)
	if info.Failed != 1 || info.Cancelled != 2 {
		t.Errorf("killed array = %+v; want 1 failed (the running one) and 2 cancelled", info)
	}
}

func TestParseRange(t *testing.T) {
	for _, tt := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"1-3", []int{1, 2, 3}, false},
		{"0-10:5", []int{0, 5, 10}, false},
		{"7", []int{7}, false},
		{"5-1", nil, true},
		{"1-10:0", nil, true},
		{"a-b", nil, true},
		{"", nil, true},
		{"-3", nil, true},
		{"1-2000000", nil, true},
		{"3-3", []int{3}, false},
	} {
		got, err := api.ParseRange(tt.in)
		if (err != nil) != tt.wantErr || fmt.Sprint(got) != fmt.Sprint(tt.want) && !tt.wantErr {
			t.Errorf("ParseRange(%q) = %v, %v; want %v (error: %v)", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestValidateAndExpand(t *testing.T) {
	spec := api.ArraySpec{Argv: []string{"render", "--scene", "{1}", "--frame={2}", "{}", "{x}", "${a}{1}", "{ b; }"}, Lines: []string{"a.blend 7"}}
	if err := Validate(spec, "/cluster"); err != nil {
		t.Fatal(err)
	}
	got, err := expand(spec, "1")
	if want := "render --scene a.blend --frame=7 a.blend 7 {x} ${a}a.blend { b; }"; err != nil || strings.Join(got, " ") != want {
		t.Errorf("expand = %q, %v; want %q", got, err, want)
	}
	for _, bad := range []api.ArraySpec{
		{Argv: []string{"x", "{3}"}, Lines: []string{"a b"}},
		{Argv: []string{"x"}},
		{Argv: []string{"x"}, Range: "1-2", Output: "/tmp/{}.out"},
		{Argv: []string{"x"}, Range: "1-2", Output: "out.txt"},
		{Argv: []string{"x"}, Range: "1-2", Nice: 20},
	} {
		if err := Validate(bad, "/cluster"); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", bad)
		}
	}
}

func deref(p *int) int {
	if p == nil {
		return -1
	}
	return *p
}

func TestArrayWaitsForMemory(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa"}, 4)
	var mu sync.Mutex
	used := uint64(0)
	l.svcs[0].MemAvailable = func() uint64 {
		mu.Lock()
		defer mu.Unlock()
		return 400<<20 - used
	}
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sleep", "0.3"}, Range: "1-6", Mem: 150 << 20})
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	l.run(t, info.ID, func() {
		n := l.nodes[0].Load()
		most = max(most, n)
		mu.Lock()
		used = uint64(n) * 150 << 20 // what the running tasks hold
		mu.Unlock()
	})
	// 400 MB free, 64 MB kept back, 150 MB a task: two at once, though
	// the node has four cores.
	if most != 2 {
		t.Errorf("at most %d tasks ran at once, want 2: as many as 400 MB holds beside the reserve", most)
	}
}

// A task started ahead runs nothing until a core frees: on one core the
// commands of three tasks never overlap, though two tasks are held at
// once.
func TestArrayTaskAheadWaits(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa"}, 1)
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sh", "-c", "date +%s.%N; sleep 0.4; date +%s.%N"}, Range: "1-3"})
	if err != nil {
		t.Fatal(err)
	}
	held, running, ready := 0, 0, 0
	id := info.ID
	info = l.run(t, id, func() {
		held = max(held, l.nodes[0].Running())
		if a, err := l.svcs[0].Array(id); err == nil {
			running, ready = max(running, a.Running), max(ready, a.Ready)
		}
	})
	if info.Done != 3 || held != 2 {
		t.Fatalf("finished with %+v, at most %d held at once; want 3 done, 2 held (one ahead)", info, held)
	}
	// The task ahead is counted ready, not running: a node of one core
	// never shows two running.
	if running != 1 || ready != 1 {
		t.Errorf("the counts showed at most %d running and %d ready; want 1 and 1", running, ready)
	}
	spans := readSpans(t, info.Dir, 3)
	for i := range spans {
		for j := range spans {
			if i != j && spans[i].from < spans[j].to && spans[j].from < spans[i].to {
				t.Errorf("tasks %d and %d ran at once on one core: %v and %v", i+1, j+1, spans[i], spans[j])
			}
		}
	}
}

// With Ahead negative, a node takes no task beyond its cores.
func TestArrayNoTaskAhead(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa"}, 2)
	l.svcs[0].Ahead = -1
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 0.2"}, Range: "1-5"})
	if err != nil {
		t.Fatal(err)
	}
	most := 0
	info = l.run(t, info.ID, func() { most = max(most, l.nodes[0].Load()) })
	if info.Done != 5 || most != 2 {
		t.Errorf("finished with %+v, at most %d at once; want 5 done, 2 at once", info, most)
	}
}

// A task whose job had moved to a node that then died ends at its home
// with 255: it is queued again, not failed.
func TestArrayTaskMovedToADeadNodeRunsAgain(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 1)
	l.svcs = l.svcs[:1] // only the home takes tasks
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 0.5; echo {}"}, Range: "1"})
	if err != nil {
		t.Fatal(err)
	}
	moved := false
	info = l.run(t, info.ID, func() {
		if moved {
			return
		}
		n := l.nodes[0]
		n.mu.Lock()
		for id, j := range n.jobs {
			if j.State == api.JobRunning {
				// It runs on drift-bbbbbb now, which dies with it.
				j.Node = "drift-bbbbbb"
				n.cmds[id].Process.Kill()
				moved = true
			}
		}
		n.mu.Unlock()
		if moved {
			l.mu.Lock()
			l.alive["drift-bbbbbb"] = false
			l.mu.Unlock()
		}
	})
	if !moved || info.Done != 1 {
		t.Errorf("finished with %+v (moved: %v), want the task done on its second attempt", info, moved)
	}
}

// TestRunPullsWhenACoreFrees: between its looks at the queue, Run takes
// the next task as soon as a job here ends, so a one-core node runs three
// short tasks back to back although its Interval is an hour.
func TestRunPullsWhenACoreFrees(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa"}, 1)
	s := l.svcs[0]
	s.Interval = time.Hour
	info, err := s.Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 0.3; echo {}"}, Range: "1-3", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := s.Tasks(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.Done == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s with an hour between looks: %+v, want the 3 tasks done (each pulled when the one before ended)", st.ArrayInfo)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if l.nodes[0].seq != 3 {
		t.Errorf("the node ran %d jobs, want 3", l.nodes[0].seq)
	}
}

// Remaining: the median run of the array's tasks that succeeded, less
// the time the task has run; 0 for a job that is no task of here.
func TestRemaining(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)
	s := &Service{
		results: map[string]result{
			"a-x-1/1.1": {Started: t0, Ended: t0.Add(10 * time.Second)},
			"a-x-1/2.1": {Started: t0, Ended: t0.Add(20 * time.Second)},
			"a-x-1/3.1": {Started: t0, Ended: t0.Add(time.Second), Exit: 3}, // failed: not counted
			"a-x-1/4.1": {Started: t0, Ended: t0.Add(30 * time.Second)},
			"a-y-1/1.1": {Started: t0, Ended: t0.Add(time.Hour)},
		},
		started: map[string]taskRef{"x-7": {array: "a-x-1", at: t0}, "x-8": {array: "a-z-1", at: t0}},
	}
	for _, tt := range []struct {
		job  string
		at   time.Duration
		want time.Duration
	}{
		{"x-7", 5 * time.Second, 15 * time.Second}, // median 20 s
		{"x-7", 25 * time.Second, time.Second},     // past the median: a second
		{"x-8", time.Second, 0},                    // none of its array has ended
		{"x-9", time.Second, 0},                    // not a task
	} {
		if got := s.Remaining(tt.job, t0.Add(tt.at)); got != tt.want {
			t.Errorf("Remaining(%s) after %v = %v, want %v", tt.job, tt.at, got, tt.want)
		}
	}
	// Past half as long again as the median, a task is overdue: how much
	// longer it runs is not known.
	for _, tt := range []struct {
		job  string
		at   time.Duration
		want bool
	}{{"x-7", 25 * time.Second, false}, {"x-7", 31 * time.Second, true}, {"x-8", time.Hour, false}} {
		if got := s.overdue(tt.job, t0.Add(tt.at)); got != tt.want {
			t.Errorf("overdue(%s) after %v = %v, want %v", tt.job, tt.at, got, tt.want)
		}
	}
}

// Whoever is told an array has ended finds its summary, even before any
// node's next look at the queue.
func TestArrayEndedHasItsSummary(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa"}, 2)
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"true"}, Range: "1-2", Mem: 1 << 20, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.svcs[0].Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	tasks := filepath.Join(info.Dir, "tasks")
	for deadline := time.Now().Add(30 * time.Second); ; {
		ok, _ := filepath.Glob(filepath.Join(tasks, "*.ok"))
		if len(ok) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the tasks did not end: %v", ok)
		}
		time.Sleep(20 * time.Millisecond)
	}
	got, err := l.svcs[0].Array(info.ID)
	if err != nil || !got.Finished() || got.Done != 2 {
		t.Fatalf("Array = %+v, %v; want 2 done", got, err)
	}
	if _, err := os.Stat(filepath.Join(info.Dir, "summary.csv")); err != nil {
		t.Errorf("the array has ended but its summary is not written: %v", err)
	}
}

// A wrapper started ahead is let run the moment it is ready: the SIGUSR2
// that lets it run is never lost, however soon it comes.
func TestTaskAheadReleasedAtOnce(t *testing.T) {
	dir := t.TempDir()
	for i := range 20 {
		res := filepath.Join(dir, fmt.Sprintf("%d.1", i))
		if err := os.WriteFile(taskexec.WaitingMarker(res), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(os.Args[0], TaskArg, "--out", res+".out", "--err", res+".err", "--result", res, "--hold", "--", "true")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for !waitsItsTurn(cmd.Process.Pid) {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("run %d: the wrapper never said it waits its turn", i)
			}
			time.Sleep(200 * time.Microsecond)
		}
		cmd.Process.Signal(syscall.SIGUSR2)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run %d: the wrapper let run ended with %v", i, err)
			}
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			t.Fatalf("run %d: the wrapper did not run its command after SIGUSR2: the signal was lost", i)
		}
		if _, err := os.Stat(res + ".ok"); err != nil {
			t.Errorf("run %d: no result: %v", i, err)
		}
		if _, err := os.Stat(taskexec.WaitingMarker(res)); err == nil {
			t.Errorf("run %d: the waiting marker is left", i)
		}
	}
}

// TestSubmitTellsTheOthers: a node that queues an array tells the other
// live nodes, which look at the queue at once instead of at their next
// look (here an hour away).
func TestSubmitTellsTheOthers(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 1)
	a, b := l.svcs[0], l.svcs[1]
	b.Interval = time.Hour
	mux := http.NewServeMux()
	for pattern, h := range b.Routes() {
		mux.Handle(pattern, h)
	}
	sock := filepath.Join(t.TempDir(), "b.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	a.Peer = func(node string) (*api.Client, error) {
		if node != b.Self {
			return nil, fmt.Errorf("no node %s", node)
		}
		return api.Local(sock), nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done; l.nodes[1].stopAll(t) }()
	time.Sleep(200 * time.Millisecond) // b's first look, at an empty queue
	info, err := a.Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 0.2"}, Range: "1-2", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for started := 0; started == 0; {
		l.nodes[1].mu.Lock()
		started = l.nodes[1].seq
		l.nodes[1].mu.Unlock()
		if time.Now().After(deadline) {
			st, _ := a.Tasks(info.ID)
			t.Fatalf("10 s after the array was queued on %s, %s has taken no task: %+v", a.Self, b.Self, st.ArrayInfo)
		}
		if started == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Before any task has ended (so before the tasks' memory is known), a
// node of one core already holds a task ahead of its first: when the
// first ends, the next starts at once instead of at the next look. A
// node with a core free still runs one task only, until one has ended.
func TestFirstLookHoldsOneAhead(t *testing.T) {
	for _, cores := range []int{1, 2} {
		l := newLab(t, []string{"drift-aaaaaa"}, cores)
		s := l.svcs[0]
		if _, err := s.Submit(api.ArraySpec{Argv: []string{"sleep", "5"}, Range: "1-4"}); err != nil {
			t.Fatal(err)
		}
		s.Tick(context.Background())
		s.Tick(context.Background())
		jobs, load := l.nodes[0].Running(), l.nodes[0].Load()
		want := 2 // one running, one waiting
		if cores > 1 {
			want = 1 // one running; the free core waits for the first to tell its memory
		}
		if jobs != want || load != 1 {
			t.Errorf("%d cores: after the first looks the node holds %d tasks, %d running; want %d, 1 running", cores, jobs, load, want)
		}
		l.nodes[0].stopAll(t)
	}
}

// A task started ahead on a node whose core is taken is given back to the
// queue when nothing else is queued and another node has had a free core
// for a second: it runs there at once, beside the first, instead of after
// it. The attempt given back is lost, not failed, and says why.
func TestWaitingTaskGivenBackToAnIdleNode(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 1)
	a, b := l.svcs[0], l.svcs[1]
	a.Idle = func() []string { // b, while it runs nothing
		if l.nodes[1].Load() == 0 {
			return []string{b.Self}
		}
		return nil
	}
	defer l.nodes[0].stopAll(t)
	defer l.nodes[1].stopAll(t)
	info, err := a.Submit(api.ArraySpec{Argv: []string{"sh", "-c", "date +%s.%N; sleep 3; date +%s.%N"}, Range: "1-2", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// a takes both: one runs, one waits ahead of its turn; b has not looked yet.
	if err := a.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := l.nodes[0].Running(); got != 2 {
		t.Fatalf("a holds %d tasks after its first look, want 2 (one waiting)", got)
	}
	info = l.run(t, info.ID, nil)
	if info.Done != 2 {
		t.Fatalf("finished with %+v, want 2 done", info)
	}
	spans := readSpans(t, info.Dir, 2)
	if !(spans[0].from < spans[1].to && spans[1].from < spans[0].to) {
		t.Errorf("the waiting task ran after the first (%v then %v): it was not given back to the idle node", spans[0], spans[1])
	}
	lost, _ := filepath.Glob(filepath.Join(info.Dir, "tasks", "*.lost"))
	if len(lost) != 1 {
		t.Fatalf("lost attempts %v, want the one given back", lost)
	}
	if why, _ := os.ReadFile(lost[0]); !strings.Contains(string(why), "given back to the queue") {
		t.Errorf("the attempt given back says %s", why)
	}
	if failed, _ := filepath.Glob(filepath.Join(info.Dir, "tasks", "*.fail")); len(failed) != 0 {
		t.Errorf("failed attempts %v, want none", failed)
	}
}

// span is when a task ran: the two times it printed, from date +%s.%N.
type span struct{ from, to float64 }

// readSpans reads the spans tasks 1 to n of the array in dir printed.
func readSpans(t *testing.T, dir string, n int) []span {
	t.Helper()
	var spans []span
	for i := 1; i <= n; i++ {
		b, err := os.ReadFile(filepath.Join(dir, strconv.Itoa(i)+".out"))
		var sp span
		if _, serr := fmt.Sscan(string(b), &sp.from, &sp.to); err != nil || serr != nil {
			t.Fatalf("task %d output %q: %v %v", i, b, err, serr)
		}
		spans = append(spans, sp)
	}
	return spans
}

// mayGiveBack asks for a full look while a task waits here and another
// node has been idle a second; while the last look saw tasks queued, at
// most every 10 s.
func TestMayGiveBackThrottled(t *testing.T) {
	s := &Service{Self: "drift-aaaaaa", Idle: func() []string { return []string{"drift-bbbbbb"} }}
	s.init()
	if s.mayGiveBack() {
		t.Fatal("a full look asked for with no task waiting here")
	}
	s.waiting = map[string]waitRef{"aaaaaa-2": {array: "a-aaaaaa-1", key: "2", n: 1}}
	if s.mayGiveBack() {
		t.Fatal("a full look asked for the moment the other node was seen idle")
	}
	s.idleSince["drift-bbbbbb"] = time.Now().Add(-2 * time.Second)
	s.lastQueued = 3
	if !s.mayGiveBack() {
		t.Fatal("no full look asked for: the other node has been idle 2 s")
	}
	if s.mayGiveBack() {
		t.Error("a second full look asked for at once while tasks were queued at the last look")
	}
	s.lastQueued = 0
	if !s.mayGiveBack() {
		t.Error("no full look asked for once the last look saw nothing queued")
	}
}

// A node reads the claims and results of the tasks other nodes run only
// as far as it needs them: the claims at its first look (and when a node
// dies, or every claimsEvery), and learnFrom results besides its own.
// Every node reading every task's files cost the head, which answers all
// of them, in proportion to nodes times tasks.
func TestOthersTasksReadSparingly(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 1)
	info, err := l.svcs[0].Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 0.2; echo {}"}, Range: "1-12"})
	if err != nil {
		t.Fatal(err)
	}
	a, b := l.svcs[0], l.svcs[1]
	// Claims and results of a's tasks that b had read, seen before b's
	// every look (the look that finds the array ended reads every result
	// for its summary).
	othersClaims, othersResults := 0, 0
	count := func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		c, r := 0, 0
		for k, cl := range b.claims {
			if strings.HasPrefix(k, info.ID+"/") && cl.Node == a.Self {
				c++
			}
		}
		for k := range b.results {
			if mine, ok := b.claims[k]; strings.HasPrefix(k, info.ID+"/") && (!ok || mine.Node != b.Self) {
				r++
			}
		}
		othersClaims, othersResults = max(othersClaims, c), max(othersResults, r)
	}
	summary := filepath.Join(l.root, Dir, info.ID, "summary.json")
	for deadline := time.Now().Add(60 * time.Second); ; {
		if err := a.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		count()
		if _, err := os.Stat(summary); err == nil {
			break
		}
		if err := b.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the array did not finish in 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	got, err := b.Array(info.ID)
	if err != nil || got.Done != 12 {
		t.Fatalf("Array = %+v, %v; want 12 done", got, err)
	}
	if l.nodes[0].seq < 4 || l.nodes[1].seq < 4 {
		t.Fatalf("tasks ran %d and %d, want both nodes to have run several", l.nodes[0].seq, l.nodes[1].seq)
	}
	// At b's first look, a ran one task and held one ahead.
	if othersClaims > 2 {
		t.Errorf("b read the claims of %d of a's tasks, want at most 2 (those running at its first look)", othersClaims)
	}
	if othersResults > learnFrom {
		t.Errorf("b read the results of %d tasks it did not run, want at most %d", othersResults, learnFrom)
	}
}

// A task waiting for a core that moves to a node that never read its
// claim is known there as waiting at that node's next full look: the
// job's arrival makes it read the claims, without waiting claimsEvery.
func TestWaitingTaskMovedHereIsAdopted(t *testing.T) {
	l := newLab(t, []string{"drift-aaaaaa", "drift-bbbbbb"}, 1)
	a, b := l.svcs[0], l.svcs[1]
	na, nb := l.nodes[0], l.nodes[1]
	_, err := a.Submit(api.ArraySpec{Argv: []string{"sh", "-c", "sleep 5"}, Range: "1-4"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// b looks first: it takes a task and holds one ahead; then a does.
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	var moved string
	for id, waits := range na.wait {
		if waits {
			moved = id
		}
	}
	if moved == "" || nb.Running() != 2 {
		t.Fatalf("a holds no task ahead (%v), or b holds %d tasks, want 2", na.wait, nb.Running())
	}
	// The balancer moves a's waiting task to b: b runs it, a is its home.
	na.mu.Lock()
	j, cmd := na.jobs[moved], na.cmds[moved]
	delete(na.cmds, moved)
	home := *j
	home.Node = b.Self
	na.jobs[moved] = &home
	delete(na.wait, moved)
	na.mu.Unlock()
	nb.mu.Lock()
	arrived := *j
	arrived.Node = b.Self
	nb.jobs[moved], nb.cmds[moved] = &arrived, cmd
	nb.mu.Unlock()
	t.Cleanup(func() {
		// The copies of the moved job's state end with its process.
		cmd.Process.Kill()
		for ended := false; !ended; {
			time.Sleep(20 * time.Millisecond)
			na.mu.Lock()
			ended = j.State == api.JobExited
			home.State = j.State
			na.mu.Unlock()
		}
		nb.mu.Lock()
		arrived.State = api.JobExited
		nb.mu.Unlock()
		nb.stopAll(t)
		na.stopAll(t)
	})
	b.lookNow()
	if err := b.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	b.mu.Lock()
	_, waits := b.waiting[moved]
	b.mu.Unlock()
	nb.mu.Lock()
	marked := nb.wait[moved]
	nb.mu.Unlock()
	if !waits || !marked {
		t.Errorf("the task that arrived on b is not known there as waiting for a core (b waits for %v)", b.waiting)
	}
}
