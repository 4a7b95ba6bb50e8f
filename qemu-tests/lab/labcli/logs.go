package labcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Logs prints a node's console log. It works after drift-lab down too, with
// node numbers, since down keeps the logs.
func Logs(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("logs", "NODE", stderr)
	follow := fs.Bool("f", false, "keep printing what the node prints until Ctrl-C or the VM stops")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ref, err := oneArg(fs, "NODE")
	if err != nil {
		fs.Usage()
		return fmt.Errorf("logs: %w", err)
	}
	var path string
	l, err := lab.Open(*state, quietLogger(stderr))
	switch {
	case err == nil:
		n, err := l.Resolve(ref)
		if err != nil {
			return fmt.Errorf("logs: %w", err)
		}
		if *follow {
			return l.FollowConsole(ctx, n, stdout)
		}
		path = l.ConsoleLog(n)
	case errors.Is(err, lab.ErrNoLab):
		n, aerr := strconv.Atoi(strings.TrimPrefix(ref, "node"))
		if aerr != nil {
			return fmt.Errorf("logs: %w", err)
		}
		path = filepath.Join(*state, "node"+strconv.Itoa(n)+".console.log")
	default:
		return fmt.Errorf("logs: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("logs: %w", err)
	}
	defer f.Close()
	_, err = io.Copy(stdout, f)
	return err
}
