package labcli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/labport"
)

// Exec runs a command on a node through its lab port and exits with the
// command's status.
func Exec(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("exec", "NODE -- CMD [ARGS...]", stderr)
	withStdin := fs.Bool("i", false, "send drift-lab's standard input to the command")
	timeout := fs.Duration("timeout", 0, "stop the command after this long; 0: no limit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	pos, argv := splitDashes(fs.Args())
	if len(pos) == 2 && argv == nil { // exec NODE CMD, without --
		pos, argv = pos[:1], pos[1:]
	}
	if len(pos) != 1 || len(argv) == 0 {
		fs.Usage()
		return fmt.Errorf("exec: want NODE -- CMD [ARGS...]")
	}
	l, n, err := openNode(*state, pos[0], stderr)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	req := labport.Request{Argv: argv}
	if *withStdin {
		if req.Stdin, err = io.ReadAll(stdin); err != nil {
			return fmt.Errorf("exec: read stdin: %w", err)
		}
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	res, err := labport.Exec(ctx, l.LabSock(n), req)
	if err != nil {
		return fmt.Errorf("exec on node %d: %w", n, err)
	}
	stdout.Write(res.Stdout)
	stderr.Write(res.Stderr)
	if res.Truncated {
		fmt.Fprintf(stderr, "drift-lab: output truncated at %d bytes\n", labport.MaxOutput)
	}
	switch {
	case res.ExitCode == 0:
		return nil
	case res.ExitCode < 0: // killed by a signal
		return &ExitError{Code: 255}
	default:
		return &ExitError{Code: res.ExitCode}
	}
}
