package api

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Arrays: many tasks of one command (drift run --array), queued on the
// cluster's shared storage until a node has a free core and the memory a
// task needs. The agent's arrays package runs them; these are the types
// that cross the API.

// ArraySpec is what drift run --array submits.
type ArraySpec struct {
	Argv []string `json:"argv"`           // the command; {} is the task's index or line, {1} {2}... its fields
	Env  []string `json:"env,omitempty"`  // KEY=VALUE, as JobSpec.Env; DRIFT_TASK and DRIFT_ARRAY are added
	Dir  string   `json:"dir,omitempty"`  // working directory of every task; "": SharedRoot
	Name string   `json:"name,omitempty"` // "": the program's base name
	// Range is the indices, "1-200" or "1-200:5" (from 1 to 200 by 5),
	// or a single "7"; empty when Lines is set.
	Range string `json:"range,omitempty"`
	// Lines are the tasks' lines (--array-file, blank lines left out):
	// task N gets line N (from 1).
	Lines      []string `json:"lines,omitempty"`
	MaxRunning int      `json:"max_running,omitempty"` // tasks running at once in the whole cluster; 0: no limit but the nodes' room
	Mem        uint64   `json:"mem,omitempty"`         // bytes a task needs; 0: learned from the first tasks' peak RSS
	Retries    int      `json:"retries,omitempty"`     // reruns of a failed task, on another node when there is one
	Nice       int      `json:"nice,omitempty"`        // 0-19: lower goes first; above 0 the tasks run at idle CPU priority
	// Output is where a task's stdout goes, {} replaced by the task's
	// index; its stderr goes to the same path with ".err" appended. "":
	// TASK.out and TASK.err in the array's directory.
	Output string `json:"output,omitempty"`
}

// Task states, as TaskInfo.State spells them.
const (
	TaskQueued  = "queued"
	TaskRunning = "running"
	// TaskReady is a task a node started ahead of its turn: claimed,
	// its job made, waiting, running nothing, for one of the node's
	// cores to free (ArrayInfo counts it apart from the running).
	TaskReady     = "ready"
	TaskDone      = "done"   // exited 0
	TaskFailed    = "failed" // exited otherwise, with no retry left
	TaskCancelled = "cancelled"
)

// ArrayInfo is an array and the counts of its tasks' states.
type ArrayInfo struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	Node      string    `json:"node"` // where it was submitted
	Submitted time.Time `json:"submitted"`
	Argv      []string  `json:"argv"`
	Dir       string    `json:"dir"` // the array's directory on the shared storage
	Nice      int       `json:"nice,omitempty"`
	Mem       uint64    `json:"mem,omitempty"` // bytes a task is given room for: --mem, or learned (0: not yet known)
	Tasks     int       `json:"tasks"`
	Queued    int       `json:"queued"`
	Running   int       `json:"running"`
	Ready     int       `json:"ready,omitempty"` // started ahead on a node, waiting for its core (TaskReady)
	Done      int       `json:"done"`
	Failed    int       `json:"failed"`
	Cancelled int       `json:"cancelled,omitempty"`
	Started   time.Time `json:"started,omitempty"` // when its first task started
	Ended     time.Time `json:"ended,omitempty"`   // when its last task ended, once every task has
	Killed    bool      `json:"killed,omitempty"`  // drift kill stopped it
}

// Finished reports whether every task of the array has ended for good.
func (a ArrayInfo) Finished() bool {
	return a.Tasks > 0 && a.Done+a.Failed+a.Cancelled == a.Tasks
}

// TaskInfo is one task of an array.
type TaskInfo struct {
	Task     string    `json:"task"` // its index (or line number, for --array-file)
	State    string    `json:"state"`
	Attempts int       `json:"attempts,omitempty"` // times it was started
	Node     string    `json:"node,omitempty"`     // where it runs or last ran
	Job      string    `json:"job,omitempty"`      // its job while it runs
	Exit     *int      `json:"exit,omitempty"`
	Signal   int       `json:"signal,omitempty"`
	Started  time.Time `json:"started,omitempty"`
	Ended    time.Time `json:"ended,omitempty"`
	Elapsed  float64   `json:"elapsed,omitempty"`  // seconds
	PeakRSS  uint64    `json:"peak_rss,omitempty"` // bytes, the largest process of the task
	Stdout   string    `json:"stdout,omitempty"`
	Stderr   string    `json:"stderr,omitempty"`
	Error    string    `json:"error,omitempty"` // why it ended, when no exit status says it
}

// ArrayStatus is an array with each of its tasks.
type ArrayStatus struct {
	ArrayInfo
	List []TaskInfo `json:"list"`
}

// IsArrayID reports whether s names an array ("a-d1b102-3") rather than
// a job ("d1b102-7").
func IsArrayID(s string) bool {
	parts := strings.Split(s, "-")
	return len(parts) == 3 && parts[0] == "a" && len(parts[1]) == 6 && parts[2] != ""
}

// MaxTasks is the most tasks one array may have.
const MaxTasks = 1_000_000

// ParseRange reads an --array range: "1-200", "1-200:5", "0-10:2", or a
// single index "7". It returns the indices in order.
func ParseRange(s string) ([]int, error) {
	const form = "want FIRST-LAST or FIRST-LAST:STEP, e.g. 1-200 or 0-100:10"
	body, stepText, hasStep := strings.Cut(s, ":")
	first, last, isRange := strings.Cut(body, "-")
	if !isRange {
		last = first
	}
	a, errA := strconv.Atoi(strings.TrimSpace(first))
	b, errB := strconv.Atoi(strings.TrimSpace(last))
	if s == "" || errA != nil || errB != nil || a < 0 || b < 0 {
		return nil, fmt.Errorf("array range %q: %s, with indices of 0 or more", s, form)
	}
	step := 1
	if hasStep {
		n, err := strconv.Atoi(strings.TrimSpace(stepText))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("array range %q: the step must be a whole number of 1 or more (%s)", s, form)
		}
		step = n
	}
	if b < a {
		return nil, fmt.Errorf("array range %q: the last index is below the first (%s)", s, form)
	}
	if n := (b-a)/step + 1; n > MaxTasks {
		return nil, fmt.Errorf("array range %q: %d tasks, over the limit of %d: split it into several arrays", s, n, MaxTasks)
	}
	out := make([]int, 0, (b-a)/step+1)
	for i := a; i <= b; i += step {
		out = append(out, i)
	}
	return out, nil
}

// ParseSize reads a memory size: a number of bytes with an optional unit
// K, M, G (powers of 1024; "200M", "1.5G", "512k").
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B")
	mult := 1.0
	switch {
	case strings.HasSuffix(t, "K"):
		mult, t = 1<<10, strings.TrimSuffix(t, "K")
	case strings.HasSuffix(t, "M"):
		mult, t = 1<<20, strings.TrimSuffix(t, "M")
	case strings.HasSuffix(t, "G"):
		mult, t = 1<<30, strings.TrimSuffix(t, "G")
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f <= 0 {
		return 0, fmt.Errorf("size %q: want a number with an optional unit K, M or G, e.g. 200M", s)
	}
	return uint64(f * mult), nil
}

func arrayPath(id, suffix string) string { return "/v1/arrays/" + url.PathEscape(id) + suffix }

// SubmitArray queues an array's tasks and returns it.
func (c *Client) SubmitArray(ctx context.Context, spec ArraySpec) (ArrayInfo, error) {
	var out ArrayInfo
	return out, c.Call(ctx, http.MethodPost, "/v1/arrays", spec, &out)
}

// Arrays lists the cluster's arrays, newest last.
func (c *Client) Arrays(ctx context.Context) ([]ArrayInfo, error) {
	var out []ArrayInfo
	return out, c.Call(ctx, http.MethodGet, "/v1/arrays", nil, &out)
}

// Array returns one array's counts.
func (c *Client) Array(ctx context.Context, id string) (ArrayInfo, error) {
	var out ArrayInfo
	return out, c.Call(ctx, http.MethodGet, arrayPath(id, ""), nil, &out)
}

// ArrayTasks returns one array with each of its tasks.
func (c *Client) ArrayTasks(ctx context.Context, id string) (ArrayStatus, error) {
	var out ArrayStatus
	return out, c.Call(ctx, http.MethodGet, arrayPath(id, "/tasks"), nil, &out)
}

// LookAtQueue asks a node to look at the queue now rather than at its
// next look: a node that has just queued or killed an array tells the
// others, so their cores start on it at once.
func (c *Client) LookAtQueue(ctx context.Context) error {
	return c.Call(ctx, http.MethodPost, "/v1/arrays-look", nil, nil)
}

// KillArray stops an array: no queued task starts, running ones get
// SIGTERM. It returns the array's counts.
func (c *Client) KillArray(ctx context.Context, id string) (ArrayInfo, error) {
	var out ArrayInfo
	return out, c.Call(ctx, http.MethodPost, arrayPath(id, "/kill"), nil, &out)
}
