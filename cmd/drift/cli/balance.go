package cli

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func ptr(b bool) *bool { return &b }

// setMode runs drift block, unblock and drain: it parses NODE and sends m.
func setMode(ctx context.Context, name string, args []string, stderr io.Writer, m api.ModeRequest) (*api.Client, string, error) {
	fs := newFlags(name, "NODE", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, "", err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return nil, "", fmt.Errorf("want one node name (drift nodes lists them): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return nil, "", err
	}
	node := fs.Arg(0)
	return c, node, c.SetMode(ctx, node, m)
}

func runBlock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	_, node, err := setMode(ctx, "block", args, stderr, api.ModeRequest{Blocked: ptr(true)})
	if err == nil {
		fmt.Fprintf(stdout, "%s takes no new jobs or migrations; its jobs stay (drift drain %s sends them away)\n", node, node)
	}
	return err
}

func runUnblock(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	_, node, err := setMode(ctx, "unblock", args, stderr, api.ModeRequest{Blocked: ptr(false), Draining: ptr(false)})
	if err == nil {
		fmt.Fprintf(stdout, "%s takes jobs again\n", node)
	}
	return err
}

// runDrain sends every job away from a node and waits until none runs
// there, showing progress; jobs that cannot move are named.
func runDrain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c, node, err := setMode(ctx, "drain", args, stderr, api.ModeRequest{Draining: ptr(true)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "draining %s: its jobs move to other nodes\n", node)
	last := -1
	stuck := 0
	for {
		ps, err := c.PS(ctx)
		if err != nil {
			return err
		}
		var here []string
		for _, j := range ps {
			if j.Node == node && j.State != api.JobExited {
				here = append(here, j.ID)
			}
		}
		if len(here) == 0 {
			fmt.Fprintf(stdout, "%s has no jobs; it is blocked until drift unblock %s\n", node, node)
			return nil
		}
		if len(here) != last {
			fmt.Fprintf(stdout, "  %d jobs still on %s: %v\n", len(here), node, here)
			last, stuck = len(here), 0
		} else if stuck++; stuck > 60 {
			return fmt.Errorf("%d jobs stay on %s (drift why JOB says why): %v", len(here), node, here)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

func runBalance(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("balance", "on|off", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	var st api.BalanceState
	switch fs.Arg(0) {
	case "":
		if st, err = c.Balance(ctx); err != nil {
			return err
		}
	case "on", "off":
		st.On = fs.Arg(0) == "on"
		if err := c.SetBalance(ctx, st); err != nil {
			return err
		}
	default:
		fs.Usage()
		return fmt.Errorf("want on or off: %w", errUsage)
	}
	_, err = fmt.Fprintf(stdout, "automatic balancing is %s\n", map[bool]string{true: "on", false: "off"}[st.On])
	return err
}
