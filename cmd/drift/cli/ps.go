package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

func runPS(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return query(ctx, "ps", args, stdout, stderr,
		func(c *api.Client, ctx context.Context) ([]api.JobInfo, error) { return c.PS(ctx) },
		func(w io.Writer, list []api.JobInfo) error { return writePS(w, list, time.Now()) })
}

func writePS(w io.Writer, list []api.JobInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	moved := false
	for _, j := range list {
		moved = moved || j.LastMove != ""
	}
	header := "JOB\tNAME\tNODE\tHOME\tSTATE\tCPU%\tRSS\tAGE\tMOVES\tCOMMAND"
	if moved {
		header += "\tLAST MOVE"
	}
	fmt.Fprintln(tw, header)
	for _, j := range list {
		state := j.State
		if j.Exit != nil {
			state = fmt.Sprintf("exited(%d)", *j.Exit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%.0f\t%s\t%s\t%d\t%s", j.ID, j.Name, j.Node, j.Home, state,
			j.CPU, humanBytes(j.RSS), now.Sub(j.Started).Round(time.Second), j.Moves, truncate(j.Command(), 40))
		if moved {
			fmt.Fprintf(tw, "\t%s", truncate(j.LastMove, 60))
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}

func runKill(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("kill", "[-s SIGNAL] JOB", stderr)
	sig := fs.String("s", "TERM", "the signal: a name (TERM, INT, KILL, HUP, USR1...) or a number")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want one job id or name (drift ps lists them): %w", errUsage)
	}
	n, err := parseSignal(*sig)
	if err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	id, err := resolveJob(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	return c.Signal(ctx, id, int(n))
}

// parseSignal reads a signal name (TERM, SIGTERM, term) or number.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for n := syscall.Signal(1); n < 32; n++ {
		if strings.EqualFold(strings.TrimPrefix(strings.ToUpper(unix.SignalName(n)), "SIG"), name) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q: use a name such as TERM, INT, KILL, HUP or a number: %w", s, errUsage)
}
