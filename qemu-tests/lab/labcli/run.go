package labcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// RunHost runs a host command inside the lab's network namespace, where
// the bridge holds lab.HostAddr and lab.HostLinkLocal, and exits with its
// status: e.g. drift-lab run -- drift --cluster 10.77.0.1 --key-file
// out/cluster.key nodes.
func RunHost(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("run", "-- CMD [ARGS...]", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fs.Usage()
		return errors.New("run: want -- CMD [ARGS...]")
	}
	l, err := lab.Open(*state, quietLogger(stderr))
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	cmd := l.Command(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Code: max(ee.ExitCode(), 1)}
	}
	if err != nil {
		return fmt.Errorf("run %s in the lab's network: %w", argv[0], err)
	}
	return nil
}
