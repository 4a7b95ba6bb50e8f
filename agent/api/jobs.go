package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// JobSpec is what to run.
type JobSpec struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`  // KEY=VALUE; the job sees only these (plus PATH=NodePath when absent)
	Dir  string   `json:"dir,omitempty"`  // working directory; "": SharedRoot if mounted, else /
	Name string   `json:"name,omitempty"` // "": the program's base name
	Node string   `json:"node,omitempty"` // where to start it; "": the best node
	Stay bool     `json:"stay,omitempty"` // never moved by the balancer
	// CheckpointEvery is the shortest time between two checkpoints of the
	// job; a checkpoint that costs the job more than CheckpointCost of
	// its time stretches it. 0: the cluster's default; negative: none.
	CheckpointEvery time.Duration `json:"checkpoint_every,omitempty"`
	// Waiting: the job starts waiting for a core (a sweep's task started
	// ahead of its turn), and does not count in its node's load until
	// the node lets it run.
	Waiting bool `json:"waiting,omitempty"`
}

// JobInfo describes a job for listings.
type JobInfo struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Node     string    `json:"node"` // where it runs now
	Home     string    `json:"home"`
	State    string    `json:"state"` // running, migrating, exited
	Exit     *int      `json:"exit,omitempty"`
	CPU      float64   `json:"cpu"` // percent of one core, over the last sample
	RSS      uint64    `json:"rss"` // bytes, the whole process tree
	Started  time.Time `json:"started"`
	Moves    int       `json:"moves"`
	LastMove string    `json:"last_move,omitempty"` // why it moved last
	Argv     []string  `json:"argv"`
	Stay     bool      `json:"stay,omitempty"`
	PID      int       `json:"pid,omitempty"` // host PID of the job's init on its node
	// Checkpoint is the newest complete checkpoint; nil: none yet.
	Checkpoint *CheckpointInfo `json:"checkpoint,omitempty"`
	// NoCheckpoint says why the job has no checkpoint, or why its newest
	// is old: it cannot be checkpointed, there is no room, or checkpoints
	// are off for it.
	NoCheckpoint string `json:"no_checkpoint,omitempty"`
	// Recovered says when and where the job last started again from a
	// checkpoint after its node died, and how much work was redone.
	Recovered string `json:"recovered,omitempty"`
}

// Command is the job's command line for display.
func (i JobInfo) Command() string { return strings.Join(i.Argv, " ") }

// ExitStatus ends a job: its code as a shell reports it (128+N for signal N).
type ExitStatus struct {
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"` // the job could not start
	// CPU is the CPU time, in seconds, the job's processes used in its
	// last stint (on the node it ended on).
	CPU float64 `json:"cpu_s,omitempty"`
}

// JobHome returns the node name of a job's home, from its id
// ("d1b102-7" is homed on drift-d1b102).
func JobHome(id string) (string, error) {
	prefix, n, ok := strings.Cut(id, "-")
	if !ok || len(prefix) != 6 || n == "" {
		return "", fmt.Errorf("%q is not a job id (drift ps lists them, e.g. d1b102-7)", id)
	}
	return "drift-" + prefix, nil
}

// RunRequest asks a home to start a job.
type RunRequest struct {
	JobSpec
	Detach bool `json:"detach,omitempty"` // start it and return its id, no terminal
}

// StartRequest asks a node to run a stint of a job homed elsewhere.
type StartRequest struct {
	Spec  JobSpec `json:"spec"`
	Home  string  `json:"home"`
	Epoch int     `json:"epoch"`
}

// StintHello opens a stint stream from the running node to the home.
type StintHello struct {
	Epoch  int    `json:"epoch"`
	Node   string `json:"node"`
	PID    int    `json:"pid"`
	Reason string `json:"reason,omitempty"` // why the job moved here
}

// SignalRequest asks for a signal to be sent to a job.
type SignalRequest struct {
	Signal int `json:"signal"`
}

// MigrateRequest asks for a job to move.
type MigrateRequest struct {
	To     string `json:"to"`               // node name, or "home"
	Reason string `json:"reason,omitempty"` // why (shown by drift ps); "": asked by a user
	// Expect, when set, is how many jobs the balancer believed the target
	// runs: the target refuses if it runs (or is receiving) more by now,
	// so that nodes acting on the same gossip do not all pile their jobs
	// onto one idle machine. nil: no such check (a user's request).
	Expect *int `json:"expect,omitempty"`
}

// AdmitRequest opens a migration on the target (POST
// /v1/jobs/ID/admit): can its CPU run the job, and does it still have the
// room the source counted on? The target that admits the job opens its
// stint's stream to the home at once, so that the restore, while the job
// is frozen, does not wait for it.
type AdmitRequest struct {
	Job     string `json:"job"`
	CPUInfo []byte `json:"cpuinfo,omitempty"` // criu cpuinfo dump of the source; nil: not checked
	Expect  *int   `json:"expect,omitempty"`  // see MigrateRequest.Expect
	Home    string `json:"home"`              // the job's home
	Epoch   int    `json:"epoch"`             // the stint the job will run as on the target
	Reason  string `json:"reason,omitempty"`  // why it moves
}

// AdmitResult is the target's answer: it takes the job, and the jobs it
// then counts as running or arriving, this one included. A refusal is an
// error status: 409 busy (or blocked, draining), 422 its CPU cannot run
// the job.
type AdmitResult struct {
	OK   bool `json:"ok"`
	Load int  `json:"load"`
}

// MigrateResult is what a move cost.
type MigrateResult struct {
	Job        string        `json:"job"`
	From       string        `json:"from"`
	To         string        `json:"to"`
	Rounds     int           `json:"rounds"`
	Bytes      int64         `json:"bytes"`
	Freeze     time.Duration `json:"freeze"`
	Total      time.Duration `json:"total"`
	TargetLoad int           `json:"target_load"` // the target's jobs when it admitted this one, this one included
}

// RestoreRequest asks the target to restore a job from the images it
// received and to run it as the next stint.
type RestoreRequest struct {
	Spec  JobSpec   `json:"spec"`
	Home  string    `json:"home"`
	Epoch int       `json:"epoch"`
	Stdio [3]uint64 `json:"stdio"` // the job's stdio pipe inodes on the source
	// StdinEOF says the job's stdin had ended on the source: the target
	// ends it too, so that a job that reads to the end does not wait for
	// ever after the move.
	StdinEOF bool `json:"stdin_eof,omitempty"`
	// Stdin is what had been written to the job's stdin on the source
	// and not yet read by it when it froze, and what came meanwhile: the
	// target puts it back in the new pipe before anything else.
	Stdin  []byte `json:"stdin,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Checkpoint, when set, is the published checkpoint (a directory on
	// the shared storage) to restore from, instead of images received.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// WhyResult says whether a job can move now.
type WhyResult struct {
	Job     string       `json:"job"`
	Node    string       `json:"node"`
	Movable bool         `json:"movable"`
	Reasons []MoveReason `json:"reasons,omitempty"`
	// Checkpoint is the newest checkpoint its node took of it; nil: none,
	// and NoCheckpoint says why when it is known.
	Checkpoint   *CheckpointInfo `json:"checkpoint,omitempty"`
	NoCheckpoint string          `json:"no_checkpoint,omitempty"`
}

// MoveReason is one thing that keeps a job from moving, in words a user can
// act on.
type MoveReason struct {
	PID  int    // host PID of the task that holds it
	What string // e.g. "/tmp/x.log (fd 3)"
	Why  string // e.g. "a file outside /cluster is not on the other node"
	Fix  string // e.g. "open it under /cluster, or run the job with --stay"
}

func (r MoveReason) String() string {
	return fmt.Sprintf("pid %d: %s: %s; %s", r.PID, r.What, r.Why, r.Fix)
}

// Job states, as JobInfo.State spells them.
const (
	JobStarting  = "starting"
	JobRunning   = "running"
	JobMigrating = "migrating" // frozen and on its way to another node
	JobExited    = "exited"
)

func jobPath(id, suffix string) string { return "/v1/jobs/" + url.PathEscape(id) + suffix }

// Run starts a job homed on the node the client talks to and returns its
// terminal: FrameInfo with its JobInfo first, then its output, then
// FrameExit with its ExitStatus. Stdin, EOF and signals go back as frames.
func (c *Client) Run(ctx context.Context, spec JobSpec) (*FrameConn, error) {
	return c.Stream(ctx, "/v1/jobs/run", RunRequest{JobSpec: spec})
}

// RunDetached starts a job with no terminal and returns it.
func (c *Client) RunDetached(ctx context.Context, spec JobSpec) (JobInfo, error) {
	var out JobInfo
	return out, c.Call(ctx, http.MethodPost, "/v1/jobs/run", RunRequest{JobSpec: spec, Detach: true}, &out)
}

// Attach reconnects a terminal to a job, as Run returns it.
func (c *Client) Attach(ctx context.Context, id string) (*FrameConn, error) {
	return c.Stream(ctx, jobPath(id, "/attach"), struct{}{})
}

// PSResult is GET /v1/ps: every job of the cluster, merged from what each
// node says of the jobs it is home to and those it runs, and the nodes
// that could not be asked in time: their jobs may be missing.
type PSResult struct {
	Jobs       []JobInfo   `json:"jobs"`
	Unanswered []NodeError `json:"unanswered,omitempty"`
}

// NodeError is a node that could not be asked, and why.
type NodeError struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// PS lists every job of the cluster. An agent older than PSResult
// answers the bare list; that is read too.
func (c *Client) PS(ctx context.Context) (PSResult, error) {
	var raw json.RawMessage
	if err := c.Call(ctx, http.MethodGet, "/v1/ps", nil, &raw); err != nil {
		return PSResult{}, err
	}
	var out PSResult
	var err error
	if trimmed := bytes.TrimSpace(raw); len(trimmed) > 0 && trimmed[0] == '[' {
		err = json.Unmarshal(trimmed, &out.Jobs)
	} else {
		err = json.Unmarshal(raw, &out)
	}
	if err != nil {
		return PSResult{}, fmt.Errorf("api /v1/ps at %s: decode: %w", c.target, err)
	}
	return out, nil
}

// Jobs lists the jobs homed on the node the client talks to.
func (c *Client) Jobs(ctx context.Context) ([]JobInfo, error) {
	var out []JobInfo
	return out, c.Call(ctx, http.MethodGet, "/v1/jobs", nil, &out)
}

// Signal sends signal sig to job id, wherever it runs.
func (c *Client) Signal(ctx context.Context, id string, sig int) error {
	return c.Call(ctx, http.MethodPost, jobPath(id, "/signal"), SignalRequest{Signal: sig}, nil)
}

// Migrate moves job id as req asks and returns what the move cost.
func (c *Client) Migrate(ctx context.Context, id string, req MigrateRequest) (MigrateResult, error) {
	ctx, cancel := withDefaultTimeout(ctx, MigrateTimeout)
	defer cancel()
	var out MigrateResult
	return out, c.Call(ctx, http.MethodPost, jobPath(id, "/migrate"), req, &out)
}

// Why says whether job id can move now, and if not, why.
func (c *Client) Why(ctx context.Context, id string) (WhyResult, error) {
	var out WhyResult
	return out, c.Call(ctx, http.MethodGet, jobPath(id, "/why"), nil, &out)
}

// The calls between agents, for a job's stints and its moves.

// StartStint asks the node the client talks to to run a stint of a job
// homed elsewhere.
func (c *Client) StartStint(ctx context.Context, id string, req StartRequest) error {
	return c.Call(ctx, http.MethodPost, jobPath(id, "/start"), req, nil)
}

// OpenStint opens the stream of a stint's output to the job's home.
func (c *Client) OpenStint(ctx context.Context, id string, hello StintHello) (*FrameConn, error) {
	return c.Stream(ctx, jobPath(id, "/stint"), hello)
}

// Admit opens a migration on the target: it admits the job or refuses.
func (c *Client) Admit(ctx context.Context, id string, req AdmitRequest) (AdmitResult, error) {
	var out AdmitResult
	return out, c.Call(ctx, http.MethodPost, jobPath(id, "/admit"), req, &out)
}

// SendImage streams one CRIU image file of job id to the target.
func (c *Client) SendImage(ctx context.Context, id, name string, r io.Reader) (int64, error) {
	return c.Upload(ctx, jobPath(id, "/images/"+url.PathEscape(name)), r)
}

// Restore asks the target to restore job id from the images it received.
func (c *Client) Restore(ctx context.Context, id string, req RestoreRequest) error {
	ctx, cancel := withDefaultTimeout(ctx, RestoreTimeout)
	defer cancel()
	return c.Call(ctx, http.MethodPost, jobPath(id, "/restore"), req, nil)
}

// Commit tells the target that the source's copy of job id is gone: the
// copy it restored and holds may run.
func (c *Client) Commit(ctx context.Context, id string) error {
	return c.Call(ctx, http.MethodPost, jobPath(id, "/commit"), nil, nil)
}

// Discard asks the target to forget a migration of job id that failed.
func (c *Client) Discard(ctx context.Context, id string) error {
	return c.Call(ctx, http.MethodPost, jobPath(id, "/discard"), nil, nil)
}

// withDefaultTimeout gives ctx the timeout d unless it has a deadline.
func withDefaultTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, d)
}
