package labcli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Add boots one more node on a running lab and waits for its ready line.
func Add(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("add", "", stderr)
	appendArgs := fs.String("append", "", "extra kernel command line arguments for this node (kernel boot only), e.g. drift.key=HEX")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the node to be ready")
	verbose := fs.Bool("v", false, "verbose logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("add: unexpected arguments %q", fs.Args())
	}
	l, err := lab.Open(*state, newLogger(stderr, *verbose))
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	start := time.Now()
	n, err := l.Add(ctx, strings.Fields(*appendArgs))
	if err != nil {
		return fmt.Errorf("add: %w", err)
	}
	fmt.Fprintf(stdout, "started node %d; waiting up to %s for it to be ready\n", n, *timeout)
	return waitNode(ctx, l, n, start, *timeout, stdout)
}

// waitNode waits for node n's ready line and prints it.
func waitNode(ctx context.Context, l *lab.Lab, n int, start time.Time, timeout time.Duration, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r, err := l.WaitReadyNode(ctx, n)
	if err != nil {
		return fmt.Errorf("node %d: %w\nthe lab is still running: look with drift-lab status/console/logs", n, err)
	}
	fmt.Fprintf(stdout, "node %d ready after %s: %s\n", n, time.Since(start).Round(100*time.Millisecond), r.Line)
	return nil
}
