package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runPending(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return query(ctx, "pending", args, stdout, stderr, (*api.Client).Enrolment,
		func(w io.Writer, e api.Enrolment) error { return writeEnrolment(w, e, time.Now()) })
}

// writeEnrolment prints the head's enrolment mode, then every machine
// that asked to join: pending ones first, with what to type.
func writeEnrolment(w io.Writer, e api.Enrolment, now time.Time) error {
	kept := "kept on DRIFT-DATA"
	if !e.Persistent {
		kept = "in memory only: forgotten when the head reboots"
	}
	fmt.Fprintf(w, "enrolment mode %s at %s, certificate %s (decisions %s)\n", e.Mode, orDash(e.Addr), shortFP(e.Fingerprint), kept)
	if e.Error != "" {
		fmt.Fprintf(w, "error: %s\n", e.Error)
	}
	if len(e.Machines) == 0 {
		fmt.Fprintln(w, "no machine has asked to join")
		return nil
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tMAC\tADDR\tSTATE\tBY\tASKED")
	pending := 0
	for _, m := range e.Machines {
		if m.State == api.EnrollPending {
			pending++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", m.Node, m.MAC, orDash(m.Addr), m.State, orDash(m.How), humanDuration(now.Sub(m.Last)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if pending > 0 {
		fmt.Fprintf(w, "\n%d pending: `drift admit NODE` (or `drift admit all`) gives a machine the cluster key; `drift reject NODE` refuses it\n", pending)
	}
	return nil
}

func shortFP(fp string) string {
	if len(fp) > 16 {
		return "sha256:" + fp[:16] + "..."
	}
	return orDash(fp)
}

// pendingMachines are the machines waiting for drift admit, when c talks
// to the head; nil elsewhere (a worker does not enrol machines).
func pendingMachines(ctx context.Context, c *api.Client) []api.EnrollMachine {
	e, err := c.Enrolment(ctx)
	if err != nil {
		return nil
	}
	var out []api.EnrollMachine
	for _, m := range e.Machines {
		if m.State == api.EnrollPending {
			out = append(out, m)
		}
	}
	return out
}

// writePendingNodes adds the pending machines under drift nodes' table.
func writePendingNodes(w io.Writer, ms []api.EnrollMachine) error {
	if len(ms) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\npending (not members: `drift admit NODE` lets one join, `drift pending` lists them all):\n")
	for _, m := range ms {
		fmt.Fprintf(w, "  %s  %s  %s\n", m.Node, m.MAC, orDash(m.Addr))
	}
	return nil
}
