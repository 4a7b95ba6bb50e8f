package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

func runUnblock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	_, node, err := setMode(ctx, "unblock", args, stderr, api.ModeRequest{Blocked: ptr(false), Draining: ptr(false)})
	if err == nil {
		fmt.Fprintf(stdout, "%s takes jobs again\n", node)
	}
	return err
}
