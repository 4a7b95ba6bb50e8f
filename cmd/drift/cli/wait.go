package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

func runWait(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("wait", "ARRAY", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("give one array id (drift ps lists them, e.g. a-d1b102-3): %w", errUsage)
	}
	id := fs.Arg(0)
	if !api.IsArrayID(id) {
		if _, err := api.JobHome(id); err == nil {
			return fmt.Errorf("%s is a job, not an array: drift attach %s waits for it, prints its output and exits with its status: %w", id, id, errUsage)
		}
		return fmt.Errorf("%q is not an array id (they look like a-d1b102-3; drift ps lists them): %w", id, errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	return waitArray(ctx, c, id, stdout, stderr, isTerminal(stderr))
}
