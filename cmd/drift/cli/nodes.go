package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runNodes(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var pending []api.EnrollMachine
	balancing := true
	fetch := func(c *api.Client, ctx context.Context) ([]api.Node, error) {
		nodes, err := c.Nodes(ctx)
		if err == nil {
			pending = pendingMachines(ctx, c)
			if st, err := c.Balance(ctx); err == nil {
				balancing = st.On
			}
		}
		return nodes, err
	}
	return query(ctx, "nodes", args, stdout, stderr, fetch,
		func(w io.Writer, nodes []api.Node) error {
			if err := writeNodes(w, nodes, time.Now()); err != nil {
				return err
			}
			writeBalancingOff(w, balancing)
			return writePendingNodes(w, pending)
		})
}

// writeBalancingOff says, under the nodes table, that automatic
// balancing is off, when it is: then jobs stay where they start.
func writeBalancingOff(w io.Writer, on bool) {
	if !on {
		fmt.Fprintf(w, "\nautomatic balancing is off: running jobs stay where they are (drift balance on)\n")
	}
}

// query runs a command that fetches one thing from an agent and prints it
// as text, or with --json as JSON.
func query[T any](ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	fetch func(*api.Client, context.Context) (T, error), text func(io.Writer, T) error) error {
	fs := newFlags(name, "[--json] [--cluster ADDR --key-file F]", stderr)
	asJSON := fs.Bool("json", false, "print as JSON")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	v, err := fetch(c, ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(v)
	}
	return text(stdout, v)
}

// writeNodes prints the nodes table. AGE is the node's uptime, or for a
// dead node how long ago it died.
func writeNodes(w io.Writer, nodes []api.Node, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDR\tROLE\tCPUS\tSPEED\tLOAD\tMEM-FREE\tJOBS\tSTATE\tAGE")
	for _, n := range nodes {
		age := time.Duration(n.UptimeSeconds * float64(time.Second))
		if n.State == "dead" {
			age = now.Sub(n.StateSince)
		}
		name := n.Name
		if n.Self {
			name += "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.2f\t%.2f\t%s\t%d\t%s\t%s\n",
			name, n.Addr, orDash(n.Role), n.CPUs, n.Speed, n.Load1, humanBytes(n.MemFree), n.Jobs, n.State, humanDuration(age))
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
