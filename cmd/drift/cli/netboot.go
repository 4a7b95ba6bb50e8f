package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runNetboot(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return query(ctx, "netboot", args, stdout, stderr, (*api.Client).Netboot,
		func(w io.Writer, nb api.Netboot) error { return writeNetboot(w, nb, time.Now()) })
}

// writeNetboot prints the head's network-boot service, then one line per
// machine that asked: its MAC, firmware, address, the node name it takes,
// the last stage it reached and how long ago.
func writeNetboot(w io.Writer, nb api.Netboot, now time.Time) error {
	if nb.Error != "" {
		fmt.Fprintf(w, "not serving: %s\n", nb.Error)
	} else {
		fmt.Fprintf(w, "dhcp=%s on %s (%s), script %s\n", nb.Mode, orDash(nb.Interface), orDash(nb.Addr), orDash(nb.ScriptURL))
		fmt.Fprintf(w, "image from %s (drift %s), iPXE binaries from %s\n", orDash(nb.Medium), orDash(nb.Version), orDash(nb.TFTPDir))
	}
	fmt.Fprintf(w, "served %s over TFTP, %s over HTTP\n\n", humanBytes(uint64(nb.TFTPBytes)), humanBytes(uint64(nb.HTTPBytes)))
	if len(nb.Machines) == 0 {
		fmt.Fprintln(w, "no machine has network-booted from this head yet")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MAC\tARCH\tADDR\tNODE\tSTAGE\tWHEN")
	for _, m := range nb.Machines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s ago\n", m.MAC, orDash(m.Arch), orDash(m.Addr), orDash(m.Node), m.Stage, humanDuration(now.Sub(m.At)))
	}
	return tw.Flush()
}
