package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

func ptr(b bool) *bool { return &b }

// setMode runs drift block, unblock and drain: it parses NODE and sends m.
func setMode(ctx context.Context, name string, args []string, stderr io.Writer, m api.ModeRequest) (*api.Client, string, error) {
	fs := newFlags(name, "NODE", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, "", fmt.Errorf("want one node name (drift nodes lists them): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return nil, "", err
	}
	node := fs.Arg(0)
	return c, node, c.SetMode(ctx, node, m)
}

func runBlock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	_, node, err := setMode(ctx, "block", args, stderr, api.ModeRequest{Blocked: ptr(true)})
	if err == nil {
		fmt.Fprintf(stdout, "%s takes no new jobs or migrations; its jobs stay (drift drain %s sends them away)\n", node, node)
	}
	return err
}
