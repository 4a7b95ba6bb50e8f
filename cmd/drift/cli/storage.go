package cli

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runStorage(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	return query(ctx, "storage", args, stdout, stderr, (*api.Client).Storage,
		func(w io.Writer, st []api.StorageStatus) error { return writeStorage(w, st, time.Now()) })
}

// writeStorage prints, for every node, what is mounted at /cluster, from
// where and whether it answers; then what the head exports, and plainly
// when that data does not survive a power-off.
func writeStorage(w io.Writer, nodes []api.StorageStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tMOUNT\tFROM\tHEALTH\tSIZE\tFREE\tSINCE")
	var problems []string
	for _, n := range nodes {
		m := n.Mount
		health, from, size, free := "down", "-", "-", "-"
		switch {
		case n.Error != "":
			health = "unknown"
			problems = append(problems, fmt.Sprintf("%s: %s", n.Node, n.Error))
		case m.Mounted && m.Healthy:
			health, from = "ok", m.Source
		case m.Mounted:
			health, from = "stale", m.Source
		}
		if n.Error == "" && m.Error != "" {
			problems = append(problems, fmt.Sprintf("%s: %s", n.Node, m.Error))
		}
		if m.Mounted && m.Total > 0 {
			size, free = humanBytes(m.Total), humanBytes(m.Free)
		}
		target := m.Target
		if target == "" {
			target = api.SharedRoot
		}
		since := "-"
		if !m.Since.IsZero() {
			since = humanDuration(now.Sub(m.Since))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n.Node, orDash(n.Role), target, from, health, size, free, since)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	external := ""
	for _, n := range nodes {
		if n.External != "" {
			external = n.External
		}
		e := n.Export
		if e == nil {
			continue
		}
		where := e.FSType
		if e.Device != "" {
			where = fmt.Sprintf("%s on %s (label %s)", e.FSType, e.Device, e.Label)
		}
		fmt.Fprintf(w, "\n%s exports %s on port %d: %s, %s free of %s\n", n.Node, e.Dir, e.Port, where, humanBytes(e.Free), humanBytes(e.Total))
		if !e.Persistent {
			fmt.Fprintf(w, "WARNING: the shared storage is in memory (tmpfs): its data is lost when %s is switched off or rebooted.\n", n.Node)
			if e.Error != "" {
				fmt.Fprintf(w, "  %s\n", e.Error)
			} else {
				fmt.Fprintf(w, "  To keep it, give the head a partition labelled DRIFT-DATA (ext4, xfs or vfat).\n")
			}
		}
	}
	if external != "" {
		fmt.Fprintf(w, "\nexternal storage: %s (drift.storage=; no node exports)\n", external)
	}
	if len(problems) > 0 {
		fmt.Fprintln(w)
		for _, p := range problems {
			fmt.Fprintln(w, p)
		}
	}
	return nil
}
