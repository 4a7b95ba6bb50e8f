package labcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"

	"github.com/driftcluster/drift/agent/labport"
)

// Exec runs a command on a node through its lab port, its standard
// streams connected to drift-lab's as it runs, and exits with the
// command's status. Ctrl-C stops the command (SIGINT, then SIGHUP).
func Exec(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("exec", "NODE -- CMD [ARGS...]", stderr)
	fs.Bool("i", true, "send drift-lab's standard input to the command (the default; kept for old scripts)")
	noStdin := fs.Bool("n", false, "give the command an empty standard input instead of drift-lab's")
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
	c := labport.Command{Argv: argv, Stdout: stdout, Stderr: stderr}
	if !*noStdin && !backgroundTerminal(stdin) {
		c.Stdin = stdin
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	st, err := l.Run(ctx, n, c)
	switch {
	case err == nil:
		return exitError(st)
	case errors.Is(err, context.Canceled): // Ctrl-C: the shell's status for it, unless the command said otherwise
		if code := exitCode(st); code != 0 {
			return &ExitError{Code: code}
		}
		return &ExitError{Code: 130}
	case errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "drift-lab: exec: stopped %q on node %d after --timeout %s\n", argv, n, *timeout)
		return &ExitError{Code: 124} // as timeout(1)
	default:
		return fmt.Errorf("exec: %w", err)
	}
}

// exitCode is the status a shell would give for st: its exit code, or
// 128 plus the signal that killed it.
func exitCode(st labport.ExitStatus) int {
	if st.Signal != 0 {
		return 128 + int(st.Signal)
	}
	return st.Code
}

func exitError(st labport.ExitStatus) error {
	if code := exitCode(st); code != 0 {
		return &ExitError{Code: code}
	}
	return nil
}

// backgroundTerminal reports whether r is a terminal of which this
// process is not in the foreground: reading it would stop the process
// (SIGTTIN), so drift-lab exec ... & gives its command an empty stdin.
func backgroundTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fg, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	return err == nil && fg != unix.Getpgrp()
}
