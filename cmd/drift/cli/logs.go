package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

// runLogs prints a node's agent log: the newest lines it keeps, and with
// -f every new line as it is logged.
func runLogs(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("logs", "[-f] [-n LINES] [NODE]", stderr)
	follow := fs.Bool("f", false, "follow: keep printing new lines until interrupted")
	lines := fs.Int("n", 0, "print only the newest `LINES` lines (0: all the node keeps)")
	cf := addClientFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 || *lines < 0 {
		fs.Usage()
		return fmt.Errorf("want at most one node name (drift nodes lists them) and -n 0 or more: %w", errUsage)
	}
	node := ""
	if len(pos) == 1 {
		node = pos[0]
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	body, err := c.Logs(ctx, node, api.LogsQuery{Lines: *lines, Follow: *follow})
	if err != nil {
		if _, jerr := api.JobHome(node); jerr == nil {
			return fmt.Errorf("%w\n%s looks like a job: drift logs prints a node's agent log; drift attach %s prints the job's output", err, node, node)
		}
		return err
	}
	defer body.Close()
	if _, err := io.Copy(stdout, body); err != nil && !errors.Is(ctx.Err(), context.Canceled) {
		return fmt.Errorf("the log stream broke: %w", err)
	}
	return nil
}
