package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
)

func runWhy(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("why", "[--json] JOB", stderr)
	asJSON := fs.Bool("json", false, "print as JSON")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want a job id or name (drift ps lists them): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	id, err := resolveJob(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	r, err := c.Why(ctx, id)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	if r.Movable {
		_, err := fmt.Fprintf(stdout, "%s can migrate now (it runs on %s)\n", r.Job, r.Node)
		return err
	}
	fmt.Fprintf(stdout, "%s cannot migrate from %s now:\n", r.Job, r.Node)
	for _, reason := range r.Reasons {
		fmt.Fprintf(stdout, "  - %s: %s; %s\n", reason.What, reason.Why, reason.Fix)
	}
	return nil
}
