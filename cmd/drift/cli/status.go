package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runStatus(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return query(ctx, "status", args, stdout, stderr, (*api.Client).Status, writeStatus)
}

// writeStatus prints one node in detail, a "key: value" line per fact.
func writeStatus(w io.Writer, st api.Status) error {
	n := st.Node
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	fmt.Fprintf(tw, "node:\t%s\n", n.Name)
	fmt.Fprintf(tw, "cluster:\t%s\n", st.ClusterID)
	fmt.Fprintf(tw, "address:\t%s (memberlist port %d, api port %d)\n", n.Addr, n.Port, n.APIPort)
	fmt.Fprintf(tw, "role:\t%s\n", orDash(n.Role))
	fmt.Fprintf(tw, "version:\t%s\n", orDash(n.Version))
	fmt.Fprintf(tw, "state:\t%s\n", n.State)
	fmt.Fprintf(tw, "uptime:\t%s\n", humanDuration(time.Duration(n.UptimeSeconds*float64(time.Second))))
	fmt.Fprintf(tw, "cpu:\t%d × %s, %d MHz, speed %.2f\n", n.CPUs, orDash(n.CPUModel), n.MHz, n.Speed)
	fmt.Fprintf(tw, "load:\t%.2f (1 min), %d runnable\n", n.Load1, n.Runnable)
	fmt.Fprintf(tw, "memory:\t%s free of %s\n", humanBytes(n.MemFree), humanBytes(n.MemTotal))
	fmt.Fprintf(tw, "jobs:\t%d\n", n.Jobs)
	fmt.Fprintf(tw, "members:\t%d alive, %d suspect, %d dead\n", st.Alive, st.Suspect, st.Dead)
	if n.MetaError != "" {
		fmt.Fprintf(tw, "metadata:\t%s\n", n.MetaError)
	}
	return tw.Flush()
}
