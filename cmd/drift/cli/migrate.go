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
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return fmt.Errorf("want a job (id or name) and a node (drift ps, drift nodes): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	id, err := resolveJob(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	res, err := c.Migrate(ctx, id, api.MigrateRequest{To: fs.Arg(1)})
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
