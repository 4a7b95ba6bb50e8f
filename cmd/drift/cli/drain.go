package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// runDrain sends every job away from a node and waits until none runs
// there, showing progress; jobs that cannot move are named.
func runDrain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c, node, err := setMode(ctx, "drain", args, stderr, api.ModeRequest{Draining: ptr(true)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "draining %s: its jobs move to other nodes\n", node)
	last := -1
	stuck := 0
	for {
		ps, err := c.PS(ctx)
		if err != nil {
			return err
		}
		var here, silent []string
		for _, n := range ps.Unanswered { // it may run jobs there, or be home to jobs running there
			silent = append(silent, n.Node)
		}
		for _, j := range ps.Jobs {
			if j.Node == node && j.State != api.JobExited {
				here = append(here, j.ID)
			}
		}
		if len(here) == 0 && len(silent) == 0 {
			fmt.Fprintf(stdout, "%s has no jobs; it is blocked until drift unblock %s\n", node, node)
			return nil
		}
		if len(here)+len(silent) != last {
			if len(here) > 0 {
				fmt.Fprintf(stdout, "  %d jobs still on %s: %v\n", len(here), node, here)
			}
			if len(silent) > 0 {
				fmt.Fprintf(stdout, "  %v did not answer: until they do, jobs on %s may be missing from this count\n", silent, node)
			}
			last, stuck = len(here)+len(silent), 0
		} else if stuck++; stuck > 60 {
			if len(here) == 0 {
				return fmt.Errorf("%v did not answer for two minutes: whether jobs remain on %s is not known", silent, node)
			}
			return fmt.Errorf("%d jobs stay on %s (drift why JOB says why): %v", len(here), node, here)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}
