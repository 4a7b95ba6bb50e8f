// Package labcli is the command line of drift-lab, which boots drift
// clusters as QEMU VMs on one host (package lab) and lets a developer reach
// their consoles and run commands on them. One file per subcommand; each is
// a function with the signature of Run, so it can be tested without a
// process.
package labcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// StateEnv names the environment variable that sets the default state
// directory.
const StateEnv = "DRIFT_LAB_STATE"

// ExitError carries the exit status drift-lab should end with, for exec,
// which passes on its command's status.
type ExitError struct{ Code int }

func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Code) }

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"up":       {"boot a cluster of VMs and wait until every node is ready", Up},
		"status":   {"list the lab's nodes: NODE NAME ROLE ADDR STATE PID", Status},
		"console":  {"attach to a node's serial console (Ctrl-] leaves)", Console},
		"exec":     {"run a command on a node: exec NODE -- CMD ARGS...", Exec},
		"logs":     {"print a node's console log (-f follows it)", Logs},
		"down":     {"stop every VM and remove the lab's network", Down},
		"add":      {"boot one more node (a worker) on the running lab: add [--append ARGS]", Add},
		"stop":     {"power a node off hard (as if its plug were pulled): stop NODE", Stop},
		"start":    {"boot a stopped node again, same MAC and disks: start NODE", Start},
		"shutdown": {"press a node's power button: it drains, then powers off: shutdown NODE", Shutdown},
		"run":      {"run a host command on the lab's network: run -- CMD ARGS...", RunHost},
	}
}

// Run runs the drift-lab subcommand named by args[0].
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return errors.New("no subcommand")
		}
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("unknown subcommand %q", args[0])
	}
	err := c.run(ctx, args[1:], stdin, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: drift-lab SUBCOMMAND [flags]")
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(w, "\nThe lab's state (sockets, logs) lives in --state, default $%s or out/lab.\n", StateEnv)
}

// newFlagSet returns a flag set for a subcommand that writes its usage to
// stderr and has the --state flag every subcommand shares.
func newFlagSet(name, argsUsage string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("drift-lab "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv(StateEnv)
	if def == "" {
		def = "out/lab"
	}
	state := fs.String("state", def, "lab state directory (sockets, console logs); $"+StateEnv+" sets the default")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: drift-lab %s [flags] %s\n", name, argsUsage)
		fs.PrintDefaults()
	}
	return fs, state
}

// newLogger logs to stderr; verbose adds debug messages.
func newLogger(stderr io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
}

// nodeArgs splits "NODE -- CMD..." style positional arguments.
func splitDashes(args []string) (before, after []string) {
	for i, a := range args {
		if a == "--" {
			return args[:i], args[i+1:]
		}
	}
	return args, nil
}

// quietLogger discards everything below warnings.
func quietLogger(stderr io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// openNode opens the lab in dir and resolves the node reference ref in it.
func openNode(dir, ref string, stderr io.Writer) (*lab.Lab, int, error) {
	l, err := lab.Open(dir, quietLogger(stderr))
	if err != nil {
		return nil, 0, err
	}
	n, err := l.Resolve(ref)
	if err != nil {
		return nil, 0, err
	}
	return l, n, nil
}

func oneArg(fs interface{ Args() []string }, what string) (string, error) {
	a := fs.Args()
	if len(a) != 1 {
		return "", fmt.Errorf("want exactly one %s, got %q", what, strings.Join(a, " "))
	}
	return a[0], nil
}
