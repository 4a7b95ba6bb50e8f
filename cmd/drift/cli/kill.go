package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

func runKill(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("kill", "[-s SIGNAL] JOB | ARRAY", stderr)
	sig := fs.String("s", "TERM", "the signal: a name (TERM, INT, KILL, HUP, USR1...) or a number")
	if id, rest, ok := arrayArg(args); ok { // drift kill ARRAY (array.go)
		return killArray(ctx, fs, id, rest, stdout)
	}
	c, id, _, err := jobArgs(ctx, fs, args)
	if err != nil {
		return err
	}
	n, err := parseSignal(*sig)
	if err != nil {
		return err
	}
	return c.Signal(ctx, id, int(n))
}

// parseSignal reads a signal name (TERM, SIGTERM, term) or number.
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	name := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for n := syscall.Signal(1); n < 32; n++ {
		if strings.EqualFold(strings.TrimPrefix(strings.ToUpper(unix.SignalName(n)), "SIG"), name) {
			return n, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q: use a name such as TERM, INT, KILL, HUP or a number: %w", s, errUsage)
}
