package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func runMigrate(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("migrate", "[--json] JOB NODE|home", stderr)
	asJSON := fs.Bool("json", false, "print as JSON")
	c, id, rest, err := jobArgs(ctx, fs, args, "a node (drift nodes lists them, or home)")
	if err != nil {
		return err
	}
	res, err := c.Migrate(ctx, id, api.MigrateRequest{To: rest[0]})
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	_, err = fmt.Fprintf(stdout, "%s moved %s → %s: frozen %s, total %s, %s moved in %d pre-copy rounds and a final dump\n",
		res.Job, res.From, res.To, res.Freeze.Round(time.Millisecond), res.Total.Round(time.Millisecond), humanBytes(uint64(res.Bytes)), res.Rounds)
	return err
}
