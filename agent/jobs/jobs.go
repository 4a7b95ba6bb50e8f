// Package jobs runs drift's jobs: programs started in the pool that may
// move between nodes while they run. A job runs in its own PID namespace
// and session, behind a small init (RunInit), with its standard streams
// on pipes held by the agent of the node it runs on (its runner). The
// agent of the node it was started from (its home, openMosix's deputy)
// keeps the job's record and relays its terminal: the client of
// `drift run` or `drift attach` talks to the home, and the home to
// whichever node runs the job now, over the agents' authenticated API.
//
// A job's life on one node is a stint; each stint streams the job's
// output to the home with an epoch number. When the job moves, the old
// stint drains what the job wrote before it was frozen and ends, and the
// new stint's output is held until then, so the output stays in order
// with nothing lost and nothing repeated.
package jobs

import (
	"fmt"
	"strings"
	"time"
)

// Spec is what to run.
type Spec struct {
	Argv []string `json:"argv"`
	Env  []string `json:"env,omitempty"`  // KEY=VALUE; the job sees only these (plus PATH=NodePath when absent)
	Dir  string   `json:"dir,omitempty"`  // working directory; "": SharedRoot if mounted, else /
	Name string   `json:"name,omitempty"` // "": the program's base name
	Node string   `json:"node,omitempty"` // where to start it; "": the best node
	Stay bool     `json:"stay,omitempty"` // never moved by the balancer
}

// NodePath is the PATH a job gets unless its spec sets one: Debian's
// order, so the image's C programs (busybox's applets in /usr/bin, the
// Debian packages it was built with) come before u-root's Go tools in
// /bbin, which open /dev/kmsg and so pin a job to its node.
const NodePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bbin"

// Info describes a job for listings.
type Info struct {
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
}

// Command is the job's command line for display.
func (i Info) Command() string { return strings.Join(i.Argv, " ") }

// ExitStatus ends a job: its code as a shell reports it (128+N for signal N).
type ExitStatus struct {
	Code   int    `json:"code"`
	Signal int    `json:"signal,omitempty"`
	Error  string `json:"error,omitempty"` // the job could not start
}

// HomeOf returns the node name of a job's home, from its id
// ("d1b102-7" is homed on drift-d1b102).
func HomeOf(id string) (string, error) {
	prefix, n, ok := strings.Cut(id, "-")
	if !ok || len(prefix) != 6 || n == "" {
		return "", fmt.Errorf("%q is not a job id (drift ps lists them, e.g. d1b102-7)", id)
	}
	return "drift-" + prefix, nil
}

// newID makes a job id for a home node.
func newID(home string, n int) string {
	return fmt.Sprintf("%s-%d", strings.TrimPrefix(home, "drift-"), n)
}
