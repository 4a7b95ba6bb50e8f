package labcli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Down stops the lab's VMs and removes its network; it keeps the logs.
func Down(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("down", "", stderr)
	verbose := fs.Bool("v", false, "verbose logging")
	if err := fs.Parse(args); err != nil {
		return err
	}
	l, err := lab.Open(*state, newLogger(stderr, *verbose))
	if errors.Is(err, lab.ErrNoLab) {
		// Nothing recorded; still remove a namespace a crashed lab may have left.
		if err := lab.Down(ctx, *state, newLogger(stderr, *verbose)); err != nil {
			return fmt.Errorf("down: %w", err)
		}
		fmt.Fprintf(stdout, "no lab is running in %s\n", *state)
		return nil
	}
	if err != nil {
		return fmt.Errorf("down: %w", err)
	}
	if err := l.Down(ctx); err != nil {
		return fmt.Errorf("down: %w", err)
	}
	fmt.Fprintf(stdout, "stopped %d nodes; console logs kept in %s\n", l.Nodes(), l.Dir())
	return nil
}
