package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"
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
		fmt.Fprintf(stdout, "%s can migrate now (it runs on %s)\n", r.Job, r.Node)
	} else {
		fmt.Fprintf(stdout, "%s cannot migrate from %s now:\n", r.Job, r.Node)
		for _, reason := range r.Reasons {
			fmt.Fprintf(stdout, "  - %s: %s; %s\n", reason.What, reason.Why, reason.Fix)
		}
	}
	switch {
	case r.Checkpoint != nil:
		fmt.Fprintf(stdout, "checkpoint: %s ago (%s, the job frozen %s); if %s dies, it starts again from there on another node\n",
			time.Since(r.Checkpoint.At).Round(time.Second), humanBytes(uint64(r.Checkpoint.Bytes)), r.Checkpoint.Freeze.Round(time.Millisecond), r.Node)
		if r.NoCheckpoint != "" {
			fmt.Fprintf(stdout, "  no newer one: %s\n", r.NoCheckpoint)
		}
	case r.NoCheckpoint != "":
		fmt.Fprintf(stdout, "no checkpoint: %s; if %s dies, the job is lost\n", r.NoCheckpoint, r.Node)
	default:
		fmt.Fprintf(stdout, "no checkpoint yet; if %s dies before the first, the job is lost\n", r.Node)
	}
	return nil
}
