package labcli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Stop powers a node off hard: its QEMU quits at once.
func Stop(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("stop", "NODE", stderr)
	l, n, err := parseNode(fs, state, args, stderr)
	if err != nil {
		return err
	}
	if err := l.StopNode(ctx, n); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	fmt.Fprintf(stdout, "node %d is off; boot it again with drift-lab start %d\n", n, n)
	return nil
}

// parseNode parses a subcommand's flags and its one NODE argument, and
// opens that node's lab (state is read after parsing, so --state counts).
func parseNode(fs *flag.FlagSet, state *string, args []string, stderr io.Writer) (*lab.Lab, int, error) {
	if err := fs.Parse(args); err != nil {
		return nil, 0, err
	}
	ref, err := oneArg(fs, "NODE")
	if err != nil {
		fs.Usage()
		return nil, 0, fmt.Errorf("%s: %w", strings.TrimPrefix(fs.Name(), "drift-lab "), err)
	}
	l, n, err := openNode(*state, ref, stderr)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", strings.TrimPrefix(fs.Name(), "drift-lab "), err)
	}
	return l, n, nil
}

// Start boots a stopped node again and waits for its ready line.
func Start(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("start", "NODE", stderr)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the node to be ready")
	l, n, err := parseNode(fs, state, args, stderr)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := l.StartNode(ctx, n); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	return waitNode(ctx, l, n, start, *timeout, stdout)
}
