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
	c, id, _, err := jobArgs(ctx, fs, args)
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
