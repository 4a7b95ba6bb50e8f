package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runPS(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if id, rest, ok := arrayArg(args); ok { // drift ps ARRAY: its tasks (array.go)
		return query(ctx, "ps", rest, stdout, stderr,
			func(c *api.Client, ctx context.Context) (api.ArrayStatus, error) { return c.ArrayTasks(ctx, id) },
			writeTasks)
	}
	var sweeps []api.ArrayInfo
	return query(ctx, "ps", args, stdout, stderr,
		func(c *api.Client, ctx context.Context) ([]api.JobInfo, error) {
			ps, err := c.PS(ctx)
			warnUnanswered(stderr, ps.Unanswered)
			sweeps, _ = c.Arrays(ctx) // an agent without arrays: none
			return ps.Jobs, err
		},
		func(w io.Writer, list []api.JobInfo) error {
			if err := writePS(w, withoutTasks(list, sweeps), time.Now()); err != nil {
				return err
			}
			return writeArraysShown(w, sweeps, time.Now())
		})
}

// warnUnanswered names the nodes a listing could not ask: their jobs may
// be missing from it.
func warnUnanswered(w io.Writer, nodes []api.NodeError) {
	for _, n := range nodes {
		fmt.Fprintf(w, "drift: %s did not answer in time, so jobs it runs or is home to may be missing: %s\n", n.Node, n.Error)
	}
}

func writePS(w io.Writer, list []api.JobInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	moved := false
	for _, j := range list {
		moved = moved || j.LastMove != ""
	}
	header := "JOB\tNAME\tNODE\tHOME\tSTATE\tCPU%\tRSS\tAGE\tMOVES\tCKPT\tCOMMAND"
	if moved {
		header += "\tLAST MOVE"
	}
	fmt.Fprintln(tw, header)
	for _, j := range list {
		state := j.State
		if j.Exit != nil {
			state = fmt.Sprintf("exited(%d)", *j.Exit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%d\t%s\t%s", j.ID, j.Name, j.Node, j.Home, state,
			j.CPU, humanBytes(j.RSS), now.Sub(j.Started).Round(time.Second), j.Moves, checkpointAge(j, now), truncate(j.Command(), 40))
		if moved {
			fmt.Fprintf(tw, "\t%s", truncate(j.LastMove, 60))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, j := range list {
		if j.Exit == nil && j.NoCheckpoint != "" {
			fmt.Fprintf(w, "%s: %s\n", j.ID, j.NoCheckpoint)
		}
	}
	return nil
}

// checkpointAge is the CKPT column: how old the job's newest checkpoint
// is, "none" when it has none and its node said why (printed below the
// table), "-" otherwise.
func checkpointAge(j api.JobInfo, now time.Time) string {
	switch {
	case j.Exit != nil:
		return "-"
	case j.Checkpoint != nil:
		return now.Sub(j.Checkpoint.At).Round(time.Second).String() + " ago"
	case j.NoCheckpoint != "":
		return "none"
	}
	return "-"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
