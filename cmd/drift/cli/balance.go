package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

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
