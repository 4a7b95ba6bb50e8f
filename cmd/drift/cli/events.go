package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/driftcluster/drift/agent/api"
)

// runEvents prints the cluster's events, every node's merged in time
// order: the newest each node keeps, and with -f every new one as it
// happens.
func runEvents(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("events", "[-f] [--json] [-n EVENTS] [--local]", stderr)
	follow := fs.Bool("f", false, "follow: keep printing new events until interrupted")
	asJSON := fs.Bool("json", false, "print one JSON object per event")
	lines := fs.Int("n", 0, "print only the newest `EVENTS` events of each node (0: all they keep)")
	local := fs.Bool("local", false, "only the events of the node asked")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *lines < 0 {
		fs.Usage()
		return fmt.Errorf("want no arguments and -n 0 or more: %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	st, err := c.Events(ctx, api.EventsQuery{Lines: *lines, Follow: *follow, Local: *local})
	if err != nil {
		return err
	}
	defer st.Close()
	enc := json.NewEncoder(stdout)
	for {
		e, err := st.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("the event stream broke: %w", err)
		}
		switch e.Kind {
		case api.EventLive:
			continue
		case api.EventUnanswered:
			fmt.Fprintf(stderr, "drift events: %s did not answer, its events are missing: %s\n", e.Str("peer"), e.Str("error"))
			continue
		}
		if *asJSON {
			err = enc.Encode(e)
		} else {
			_, err = fmt.Fprintln(stdout, e)
		}
		if err != nil {
			return err
		}
	}
}
