package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

func runRemove(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("remove", "[--force] [--out FILE] [--json] NODE [--cluster ADDR --key-file F]", stderr)
	force := fs.Bool("force", false, "remove it even while jobs run on it (they stay there, cut off from the cluster)")
	rf := addRekeyFlags(fs)
	// Flags may come after the node too: drift remove NODE --out F.
	nodes, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(nodes) != 1 {
		fs.Usage()
		return fmt.Errorf("want one node name (drift nodes lists them): %w", errUsage)
	}
	c, err := rf.prepare()
	if err != nil {
		return err
	}
	res, err := c.Remove(ctx, api.RemoveRequest{Node: nodes[0], Force: *force})
	if res.Rekey.Key == "" {
		return err // nothing changed
	}
	if !rf.asJSON {
		fmt.Fprintf(stdout, "removed %s: %s\n", res.Node, res.Enrolment)
	}
	shown := res
	shown.Rekey.Key = "" // it goes to --out, not to the screen
	return rf.report(stdout, stderr, res.Rekey, shown, err)
}
