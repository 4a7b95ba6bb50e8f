package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

func runAdmit(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ms, err := decideEnrolment(ctx, "admit", args, stderr, (*api.Client).EnrollAdmit)
	for _, m := range ms {
		fmt.Fprintf(stdout, "admitted %s (%s): it is given the cluster key the next time it asks, within seconds\n", m.Node, m.MAC)
	}
	return err
}

// decideEnrolment runs drift admit and drift reject: it parses NODE|MAC|all
// and sends the decision to the head.
func decideEnrolment(ctx context.Context, name string, args []string, stderr io.Writer,
	send func(*api.Client, context.Context, string) ([]api.EnrollMachine, error)) ([]api.EnrollMachine, error) {
	fs := newFlags(name, "NODE|MAC|all [--cluster HEAD --key-file F]", stderr)
	cf := addClientFlags(fs)
	// Flags may come after the machine too: drift admit NODE --cluster HEAD.
	sel, err := parseInterleaved(fs, args)
	if err != nil {
		return nil, err
	}
	if len(sel) != 1 {
		fs.Usage()
		return nil, fmt.Errorf("want one node name, MAC address or all (drift pending lists the machines): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return nil, err
	}
	return send(c, ctx, sel[0])
}
