//go:build linux

// Package migrate moves a running job from one node to another with CRIU
// (through go-criu's swrk RPC): iterative pre-copy while the job runs, a
// short freeze for the final dump, the images streamed to the target over
// whatever channel the caller provides, a restore there, and only then the
// end of the job on the source. Any failure on the way leaves the job
// running where it was.
//
// The job agent (agent/jobs) uses it: Check says whether a job can move and
// why not, Source.Migrate runs on the node where the job runs, Target
// receives images and restores on the other node, Explain turns CRIU's
// log into a sentence a user can act on.
//
// Images travel as one tar per images directory: "pre-1.tar" ...
// "pre-N.tar" then "final.tar". Each dump names its predecessor with a
// relative "parent" symlink ("../pre-N"), so the target keeps the same
// layout (WorkDir/ID/pre-1, ..., WorkDir/ID/final) and CRIU follows the
// chain there as it did on the source.
package migrate

import (
	"errors"
	"fmt"
	"strings"

	"github.com/driftcluster/drift/agent/api"
)

// Reason is one thing that keeps a job from moving; it crosses the API
// in `drift why`, so it is defined there.
type Reason = api.MoveReason

// ErrNotMigratable reports that a job holds something that cannot move to
// another node; the error is a *NotMigratableError with the reasons.
var ErrNotMigratable = errors.New("job cannot migrate")

// NotMigratableError lists why a job cannot move. It matches
// ErrNotMigratable with errors.Is.
type NotMigratableError struct {
	Reasons []Reason
}

func (e *NotMigratableError) Error() string {
	var b strings.Builder
	b.WriteString(ErrNotMigratable.Error())
	for i, r := range e.Reasons {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %s (%s)", r.What, r.Why, r.Fix)
	}
	return b.String()
}

func (e *NotMigratableError) Is(target error) bool { return target == ErrNotMigratable }

// CRIUError is a failed CRIU operation, with CRIU's log translated.
type CRIUError struct {
	Op     string // "pre-dump round 2", "final dump", "restore", "cpuinfo check"
	Reason string // Explain of the log; "" if there was no log
	Log    string // the last lines of CRIU's log, for the agent's log
	Err    error  // what go-criu or the criu command returned
}

func (e *CRIUError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("criu %s: %v", e.Op, e.Err)
	}
	return fmt.Sprintf("criu %s: %s (%v)", e.Op, e.Reason, e.Err)
}

func (e *CRIUError) Unwrap() error { return e.Err }
