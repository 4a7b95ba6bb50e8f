// Package cli implements the drift command: one file per subcommand (and
// a few shared helpers: client.go, terminal.go, jobref.go), each
// a Run function that takes its arguments and streams, so it can be tested
// without a process.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is one drift subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"admit":   {"give network-booted machines that wait for it the cluster key (head)", runAdmit},
		"attach":  {"reconnect the terminal to a job", runAttach},
		"balance": {"turn automatic balancing on or off for the whole cluster", runBalance},
		"block":   {"stop a node taking new jobs and migrations", runBlock},
		"cert":    {"write the certificate a Prometheus server scrapes /metrics with", runCert},
		"cp":      {"copy files between this machine and /cluster (:PATH)", runCP},
		"drain":   {"move every job away from a node, and block it", runDrain},
		"events":  {"print the cluster's events; -f follows them", runEvents},
		"kill":    {"send a signal to a job, wherever it runs", runKill},
		"logs":    {"print a node's agent log; -f follows it", runLogs},
		"netboot": {"list the machines that network-booted from this head", runNetboot},
		"migrate": {"move a running job to another node", runMigrate},
		"nodes":   {"list the cluster's nodes", runNodes},
		"pending": {"list the machines that asked the head to join, and its decisions", runPending},
		"profile": {"write a CPU profile of a node's agent, for go tool pprof", runProfile},
		"ps":      {"list every job in the cluster", runPS},
		"rekey":   {"move the whole cluster to a new key; the old one stops working", runRekey},
		"reject":  {"refuse a network-booted machine the cluster key (head)", runReject},
		"remove":  {"make a node's credentials useless: the cluster rekeys without it", runRemove},
		"run":     {"run a command in the pool", runRun},
		"status":  {"show this node in detail", runStatus},
		"storage": {"show the shared storage at /cluster on every node", runStorage},
		"top":     {"show the nodes, jobs and events live, full-screen", runTop},
		"ui":      {"serve a live web dashboard of the cluster (http://127.0.0.1:8470)", runUI},
		"unblock": {"let a node take jobs again", runUnblock},
		"version": {"print the drift version of this binary and node", runVersion},
		"wait":    {"wait until every task of an array has ended", runWait},
		"why":     {"say whether a job can migrate now, and if not, why", runWhy},
	}
}

// parseInterleaved parses args with fs, flags before, between and after
// the positional arguments (drift logs NODE -f), and returns the
// positional ones.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos, args = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
}

// errUsage marks an error the user fixes by reading the usage text.
var errUsage = errors.New("usage")

// Main runs the drift command line and returns the process exit status.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmds := commands()
	args = hoistGlobalFlags(args)
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout, cmds)
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "drift: unknown command %q; run `drift help` for the list\n", args[0])
		return 2
	}
	if err := c.run(ctx, args[1:], stdin, stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		fmt.Fprintf(stderr, "drift %s: %v\n", args[0], err)
		if errors.Is(err, errUsage) {
			return 2
		}
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: drift COMMAND [ARGS...]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, cmds[n].summary)
	}
}

// newFlags returns a FlagSet for a subcommand that prints its usage to stderr.
func newFlags(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("drift "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: drift %s %s\n", name, strings.TrimSpace(args))
		fs.PrintDefaults()
	}
	return fs
}
