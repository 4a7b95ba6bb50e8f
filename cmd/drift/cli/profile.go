package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// runProfile writes a CPU profile of a node's agent, for go tool pprof:
// what an agent spends its node's CPU on.
func runProfile(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("profile", "[-seconds N] [-o FILE] [NODE]", stderr)
	secs := fs.Int("seconds", 10, "profile the agent for `N` seconds (1 to 120)")
	out := fs.String("o", "", "write the profile to `FILE` (default drift-NODE.pprof)")
	cf := addClientFlags(fs)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		return err
	}
	d := time.Duration(*secs) * time.Second
	if len(pos) > 1 || d <= 0 || d > api.MaxProfile {
		fs.Usage()
		return fmt.Errorf("want at most one node name (drift nodes lists them) and -seconds from 1 to %d: %w", int(api.MaxProfile/time.Second), errUsage)
	}
	node := ""
	if len(pos) == 1 {
		node = pos[0]
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	name := *out
	if name == "" {
		name = "drift-" + node + ".pprof"
		if node == "" {
			name = "drift.pprof"
		}
	}
	fmt.Fprintf(stderr, "drift: profiling the agent for %s...\n", d)
	body, err := c.Profile(ctx, node, d)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.Create(name)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("profile: the transfer broke: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	fmt.Fprintf(stderr, "drift: wrote %s; read it with: go tool pprof -top %s\n", name, name)
	return nil
}
