package qemutests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Sweeps (drift run --array), as steps of TestCluster. The lab's VMs have
// one core each, so a node may hold at most 2 tasks at once (cores + 1:
// one running, one started ahead and waiting for the core).

// sweepPy is a CPU-bound program the project did not write, uploaded from
// the host: task N prints N and a sum that depends on N (over LOOPS
// steps, the second argument).
const sweepPy = `import sys
n = int(sys.argv[1])
loops = int(sys.argv[2]) if len(sys.argv) > 2 else %d
s = 0
for i in range(loops):
    s = (s + i * n) %% 1000003
print(n, s)
`

const sweepLoops = 600000

// sweepTaskLoops makes a task of the 60-task sweep about 10 s of CPU
// under TCG.
const sweepTaskLoops = 3 * sweepLoops

// sweepWant is what sweepPy prints for task n over loops steps.
func sweepWant(n, loops int) string {
	s := 0
	for i := 0; i < loops; i++ {
		s = (s + i*n) % 1000003
	}
	return fmt.Sprintf("%d %d\n", n, s)
}

// arrayID reads the array id from the first line drift run --array
// prints on stderr ("drift: array a-d18c02-1: ...").
func arrayID(stderr string) string {
	for _, f := range strings.Fields(stderr) {
		if f = strings.TrimSuffix(f, ":"); api.IsArrayID(f) {
			return f
		}
	}
	return ""
}

// arrayTasks is drift ps ARRAY --json on node n.
func arrayTasks(ctx context.Context, t *testing.T, c *cluster, n int, id string) api.ArrayStatus {
	t.Helper()
	out, err := c.l.ExecOK(ctx, n, "drift", "ps", id, "--json")
	if err != nil {
		t.Fatalf("drift ps %s: %v", id, err)
	}
	var st api.ArrayStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("drift ps %s --json: %v: %s", id, err, out)
	}
	return st
}

// runningTasks counts the running tasks of array id on each node, from
// drift ps --json (where each job runs now, moves included).
func runningTasks(ctx context.Context, c *cluster, id string) (map[string]int, error) {
	js, err := c.l.Jobs(ctx, 1)
	if err != nil {
		return nil, err
	}
	per := map[string]int{}
	for _, j := range js {
		if strings.HasPrefix(j.Name, id+"/") && j.State != api.JobExited {
			per[j.Node]++
		}
	}
	return per, nil
}

// testArraySweep: a sweep of a Python program uploaded from the host,
// submitted attached from worker 1: every output right, the summary
// counts every success, and no node ever runs more tasks than its cores
// plus one.
func testArraySweep(ctx context.Context, t *testing.T, c *cluster) {
	const tasks = 60
	ws := newWorkstation(t, c.l, c.img)
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "work.py"), []byte(fmt.Sprintf(sweepPy, sweepTaskLoops)), 0o644); err != nil {
		t.Fatal(err)
	}
	ws.ok(ctx, t, work, "cp", "work.py", ":sweep/")
	cores := map[string]int{}
	out, err := c.l.ExecOK(ctx, 1, "drift", "nodes", "--json")
	var nodes []api.Node
	if err != nil || json.Unmarshal([]byte(out), &nodes) != nil {
		t.Fatalf("drift nodes --json: %v: %s", err, out)
	}
	for _, n := range nodes {
		cores[n.Name] = n.CPUs
	}

	start := time.Now()
	run := startExec(ctx, t, c.l, 2, "sh", "-c", fmt.Sprintf("cd /cluster/sweep && drift run --array 1-%d -- python3 work.py {}", tasks))
	var id string
	shown := false
	peak := map[string]int{}
	for {
		select {
		case <-run.done:
		case <-time.After(2 * time.Second):
		}
		if id == "" {
			// The id is on drift run's first line; until it ends, ask
			// the queue.
			if out, err := c.l.ExecOK(ctx, 1, "sh", "-c", "ls /cluster/drift/arrays"); err == nil {
				for _, f := range strings.Fields(out) {
					if api.IsArrayID(f) && strings.Contains(f, strings.TrimPrefix(c.names[1], "drift-")) {
						id = f // the newest of worker 1's is last
					}
				}
			}
		}
		if id != "" && len(peak) > 0 && !shown {
			// What a user sees mid-sweep, for the log.
			for _, argv := range [][]string{{"drift", "ps"}, {"drift", "ps", id}} {
				out, err := c.l.ExecOK(ctx, 1, argv...)
				t.Logf("%s: %v\n%s", strings.Join(argv, " "), err, out)
			}
			shown = true
		}
		if id != "" {
			per, err := runningTasks(ctx, c, id)
			if err != nil {
				t.Logf("drift ps: %v", err)
			}
			for node, n := range per {
				if n > peak[node] {
					peak[node] = n
				}
				if n > cores[node]+1 {
					t.Errorf("%s runs %d tasks at once, over its %d core(s) + 1", node, n, cores[node])
				}
			}
		}
		select {
		case <-run.done:
		default:
			continue
		}
		break
	}
	res := run.wait(ctx, t, time.Second)
	t.Logf("drift run --array 1-%d ended after %s with %d: %s%s", tasks, since(start), res.ExitCode, res.Stdout, res.Stderr)
	if got := arrayID(string(res.Stderr)); got != "" {
		id = got
	}
	if res.ExitCode != 0 || id == "" {
		t.Fatalf("drift run --array exited %d (array %q), want 0 once every task succeeded: %s", res.ExitCode, id, res.Stderr)
	}
	t.Logf("most tasks running at once on each node (sampled every 2 s): %v", peak)

	st := arrayTasks(ctx, t, c, 3, id)
	if st.Done != tasks || st.Failed != 0 {
		t.Errorf("drift ps %s: %d done, %d failed; want %d done", id, st.Done, st.Failed, tasks)
	}
	ran := map[string]int{}
	var took []time.Duration
	for _, task := range st.List {
		ran[task.Node]++
		took = append(took, time.Duration(task.Elapsed*float64(time.Second)))
		got, err := c.l.ExecOK(ctx, 1, "cat", task.Stdout)
		var n int
		fmt.Sscan(task.Task, &n)
		if err != nil || got != sweepWant(n, sweepTaskLoops) {
			t.Errorf("task %s: %s holds %q (%v), want %q", task.Task, task.Stdout, got, err, sweepWant(n, sweepTaskLoops))
		}
	}
	slices.Sort(took)
	t.Logf("tasks per node: %v; a task ran %v to %v, median %v", ran, took[0], took[len(took)-1], took[len(took)/2])
	if len(ran) < 2 {
		t.Errorf("every task ran on %v: want them spread over the nodes", ran)
	}
	sum, err := c.l.ExecOK(ctx, 2, "cat", st.Dir+"/summary.csv")
	t.Logf("summary.csv:\n%s", sum)
	if err != nil || strings.Count(sum, ",done,") != tasks {
		t.Errorf("summary.csv: %v\n%s\nwant %d lines of done tasks", err, sum, tasks)
	}
}

// testArrayMemory: tasks that each hold 150 MB, on 512 MB nodes, with no
// --mem (the queue learns it from the first tasks): the OOM killer never
// runs, on any node.
func testArrayMemory(ctx context.Context, t *testing.T, c *cluster) {
	const tasks = 6
	oomRE := "out of memory|oom-kill|killed process"
	before := map[int]string{}
	for n := 1; n <= 3; n++ {
		out, _ := c.l.ExecOK(ctx, n, "sh", "-c", "dmesg | grep -ciE '"+oomRE+"' || true")
		before[n] = strings.TrimSpace(out)
	}
	prog := "import sys, time; b = bytearray(150 << 20); [b.__setitem__(i, 1) for i in range(0, len(b), 4096)]; time.sleep(2); print(sys.argv[1], len(b))"
	res, err := c.l.Exec(ctx, 3, "drift", "run", "--array", fmt.Sprintf("1-%d", tasks), "--", "python3", "-c", prog, "{}")
	if err != nil {
		t.Fatalf("drift run --array: %v", err)
	}
	id := arrayID(string(res.Stderr))
	t.Logf("drift run --array of 150 MB tasks exited %d: %s%s", res.ExitCode, res.Stdout, res.Stderr)
	if res.ExitCode != 0 || id == "" {
		t.Errorf("drift run --array of 150 MB tasks exited %d, want 0", res.ExitCode)
	}
	for n := 1; n <= 3; n++ {
		out, _ := c.l.ExecOK(ctx, n, "sh", "-c", "dmesg | grep -ciE '"+oomRE+"' || true")
		if got := strings.TrimSpace(out); got != before[n] {
			lines, _ := c.l.ExecOK(ctx, n, "sh", "-c", "dmesg | grep -iE '"+oomRE+"'")
			t.Errorf("node %d: the OOM killer ran during the sweep: %s", n, lines)
		}
	}
	if id == "" {
		return
	}
	st := arrayTasks(ctx, t, c, 1, id)
	for _, task := range st.List {
		if task.State != api.TaskDone || task.PeakRSS < 150<<20 {
			t.Errorf("task %s: %s, peak RSS %d; want done with at least 150 MB", task.Task, task.State, task.PeakRSS)
		}
	}
	t.Logf("memory a task is given room for, learned: %d MB", st.Mem>>20)
	if st.Mem < 150<<20 {
		t.Errorf("the queue learned %d MB per task, want at least the 150 MB each holds", st.Mem>>20)
	}
}

// testArraySubmitterDies: the node that submitted a sweep is powered off
// halfway; the other nodes run what is left (and what ran on it), and
// drift wait from another node returns with every task done. The node is
// booted again at the end, as the lab was.
func testArraySubmitterDies(ctx context.Context, t *testing.T, c *cluster) {
	const tasks = 9
	const loops = 3 * sweepLoops // long enough to catch it halfway
	gone := c.names[2]
	res, err := c.l.Exec(ctx, 3, "sh", "-c", fmt.Sprintf("cd /cluster/sweep && drift run -d --array 1-%d -- python3 work.py {} %d", tasks, loops))
	if err != nil || res.ExitCode != 0 {
		t.Fatalf("drift run -d --array on %s: %v %s", gone, err, res.Stderr)
	}
	id := strings.TrimSpace(string(res.Stdout))
	if !api.IsArrayID(id) {
		t.Fatalf("drift run -d --array printed %q, want an array id", res.Stdout)
	}
	// Halfway: a third of the tasks done, one of them running on the
	// submitting node if it can be had.
	for {
		st := arrayTasks(ctx, t, c, 1, id)
		onGone := false
		for _, task := range st.List {
			onGone = onGone || task.State == api.TaskRunning && task.Node == gone
		}
		if st.Done >= tasks/3 && onGone || st.Done >= tasks/2 {
			t.Logf("powering %s off with %d done, %d running (one there: %v)", gone, st.Done, st.Running, onGone)
			break
		}
		if st.Finished() {
			t.Fatalf("the sweep ended before its submitting node could be powered off: %+v", st.ArrayInfo)
		}
		time.Sleep(time.Second)
	}
	if err := c.l.StopNode(ctx, 3); err != nil {
		t.Fatalf("power off node 3: %v", err)
	}
	off := time.Now()
	wres, err := c.l.Exec(ctx, 2, "drift", "wait", id)
	if err != nil {
		t.Fatalf("drift wait %s: %v", id, err)
	}
	t.Logf("drift wait %s on %s returned %s after the power-off with %d: %s%s", id, c.names[1], since(off), wres.ExitCode, wres.Stdout, wres.Stderr)
	if wres.ExitCode != 0 {
		t.Errorf("drift wait %s exited %d, want 0: every task done", id, wres.ExitCode)
	}
	st := arrayTasks(ctx, t, c, 1, id)
	again := 0
	for _, task := range st.List {
		if task.State != api.TaskDone {
			t.Errorf("task %s: %s, want done", task.Task, task.State)
			continue
		}
		var n int
		fmt.Sscan(task.Task, &n)
		if got, err := c.l.ExecOK(ctx, 1, "cat", task.Stdout); err != nil || got != sweepWant(n, loops) {
			t.Errorf("task %s: %s holds %q (%v), want %q", task.Task, task.Stdout, got, err, sweepWant(n, loops))
		}
		if task.Attempts > 1 {
			again++
		}
	}
	t.Logf("%d task(s) ran again after %s died", again, gone)

	if err := c.l.StartNode(ctx, 3); err != nil {
		t.Fatalf("boot node 3 again: %v", err)
	}
	if _, err := c.l.WaitReadyNode(ctx, 3); err != nil {
		t.Fatalf("node 3 booted again: %v", err)
	}
	c.whole(ctx, t)
}

// shortSh is a user's shell script: one short step of a sweep, which fails
// on multiples of 7.
const shortSh = `#!/bin/sh
n=$1
if [ $((n % 7)) -eq 0 ]; then
  echo "cannot do $n" >&2
  exit 3
fi
echo "square of $n is $((n * n))"
`

// testArrayShortTasks: a sweep of a shell script whose tasks take no
// time, started from the host. Tasks started ahead are let run within
// moments of starting (a release that came too soon once left a task
// waiting for ever); the sweep ends with exit 1, naming its two failed
// tasks, and its summary is there when drift run returns.
func testArrayShortTasks(ctx context.Context, t *testing.T, c *cluster) {
	const tasks = 20
	ws := newWorkstation(t, c.l, c.img)
	work := t.TempDir()
	if err := os.WriteFile(filepath.Join(work, "short.sh"), []byte(shortSh), 0o755); err != nil {
		t.Fatal(err)
	}
	ws.ok(ctx, t, work, "cp", "short.sh", ":short/")
	res := ws.run(ctx, t, work, nil, "run", "--array", fmt.Sprintf("1-%d", tasks), "--", "/cluster/short/short.sh", "{}")
	stderr := string(res.Stderr)
	if res.ExitCode != 1 {
		t.Fatalf("drift run --array of a script failing on tasks 7 and 14: exit %d, want 1; stderr %q", res.ExitCode, stderr)
	}
	for _, want := range []string{"task 7: exit 3", "task 14: exit 3", "7.err"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("drift run's stderr does not name the failed tasks (%q): %q", want, stderr)
		}
	}
	id := arrayID(stderr)
	if id == "" {
		t.Fatalf("no array id in drift run's stderr %q", stderr)
	}
	dir := "/cluster/drift/arrays/" + id
	out, err := c.l.ExecOK(ctx, 1, "sh", "-c", fmt.Sprintf("cd %s && grep -c ,done, summary.csv && cat 13.out 14.err", dir))
	if want := fmt.Sprintf("%d\nsquare of 13 is 169\ncannot do 14\n", tasks-2); err != nil || out != want {
		t.Errorf("summary and outputs of %s: %q, %v; want %q", id, out, err, want)
	}
}

// testArrayUneven runs, from the host, a sweep of one long task and five
// short ones (a shell command that sleeps as long as its line says, then
// prints the time): the node that takes the long one also takes the next,
// ahead of its turn. Once the other nodes have run the short ones and sit
// idle, that waiting task is given back to the queue and runs on one of
// them, long before the long one ends; without that it would wait for it.
func testArrayUneven(ctx context.Context, t *testing.T, c *cluster) {
	ws := newWorkstation(t, c.l, c.img)
	work := t.TempDir()
	const long = 40
	lines := fmt.Sprintf("%d\n3\n3\n3\n3\n3\n", long)
	if err := os.WriteFile(filepath.Join(work, "lengths.txt"), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	res := ws.run(ctx, t, work, nil, "run", "--array-file", "lengths.txt", "--", "sh", "-c", `sleep "$1"; date +%s`, "task", "{1}")
	took := time.Since(began)
	if res.ExitCode != 0 {
		t.Fatalf("drift run --array-file of sleeps: exit %d; stderr %q", res.ExitCode, res.Stderr)
	}
	id := arrayID(string(res.Stderr))
	dir := "/cluster/drift/arrays/" + id
	out, err := c.l.ExecOK(ctx, 1, "sh", "-c", fmt.Sprintf("cd %s && cat 1.out 2.out && cat summary.csv && ls tasks", dir))
	if err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	t.Logf("the sweep took %s; %s", took.Round(time.Second), out)
	var end1, end2 int64
	if _, err := fmt.Sscan(out, &end1, &end2); err != nil {
		t.Fatalf("the first two tasks' outputs: %v in %q", err, out)
	}
	// Task 2 waited behind task 1 (40 s) on the node that took both; given
	// back, it ends some 30 s before task 1 does.
	if end2 > end1-long/2 {
		t.Errorf("task 2 ended at %d, task 1 at %d: the task waiting behind the long one was not given back to an idle node", end2, end1)
	}
	var node1, node2, tries2 string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Split(l, ",")
		if len(f) < 8 {
			continue
		}
		switch f[0] {
		case "1":
			node1 = f[2]
		case "2":
			node2, tries2 = f[2], f[7]
		}
	}
	if node2 == node1 || tries2 != "2" {
		t.Errorf("summary: task 1 on %q, task 2 on %q after %s attempts; want task 2 on another node, its second attempt", node1, node2, tries2)
	}
	if !strings.Contains(out, "2.1.lost") {
		t.Errorf("the attempt given back is not recorded as lost: %q", out)
	}
}
