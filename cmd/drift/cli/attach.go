package cli

import (
	"context"
	"fmt"
	"io"
)

func runAttach(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("attach", "JOB", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want one job id or name (drift ps lists them): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	id, err := resolveJob(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	fc, err := c.Attach(ctx, id)
	if err != nil {
		return err
	}
	return terminal(fc, stdin, stdout, stderr)
}
