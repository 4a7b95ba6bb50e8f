package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

func runReject(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ms, err := decideEnrolment(ctx, "reject", args, stderr, (*api.Client).EnrollReject)
	for _, m := range ms {
		fmt.Fprintf(stdout, "refused %s (%s): it is never given the cluster key (drift admit %s changes that)\n", m.Node, m.MAC, m.Node)
	}
	return err
}
