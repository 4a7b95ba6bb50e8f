package labcli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Status lists the lab's nodes.
func Status(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("status", "", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := lab.Open(*state, quietLogger(stderr))
	if err != nil {
		return err
	}
	st := l.Status()
	if *asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(st)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tNAME\tROLE\tADDR\tSTATE\tPID")
	for _, s := range st {
		pid := "-"
		if s.State != "stopped" {
			pid = strconv.Itoa(s.PID)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", s.Node, dash(s.Name), dash(s.Role), dash(s.Addr), s.State, pid)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
