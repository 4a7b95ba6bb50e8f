package cli

import (
	"context"
	"io"
)

func runAttach(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("attach", "JOB", stderr)
	c, id, _, err := jobArgs(ctx, fs, args)
	if err != nil {
		return err
	}
	fc, err := c.Attach(ctx, id)
	if err != nil {
		return err
	}
	return terminal(fc, stdin, stdout, stderr)
}
