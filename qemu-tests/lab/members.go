package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Members runs drift nodes --json on node n (through its lab port) and
// returns the members it lists.
func (l *Lab) Members(ctx context.Context, n int) ([]api.Node, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := l.Exec(ctx, n, "drift", "nodes", "--json")
	if err != nil {
		return nil, fmt.Errorf("drift nodes: %w", err)
	}
	if res.ExitCode != 0 {
		return nil, fmt.Errorf("node %d: drift nodes exited %d: %s", n, res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	var nodes []api.Node
	if err := json.Unmarshal(res.Stdout, &nodes); err != nil {
		return nil, fmt.Errorf("node %d: drift nodes --json: %w", n, err)
	}
	return nodes, nil
}

// MemberStates maps each member's name to its state (alive, suspect, dead).
func MemberStates(nodes []api.Node) map[string]string {
	m := make(map[string]string, len(nodes))
	for _, n := range nodes {
		m[n.Name] = n.State
	}
	return m
}

// WaitMembers polls Members on each of the nodes, once a second, until
// ok has held for every one of them (a node that met it is not asked
// again), and returns the last lists, by node. It
// fails when ctx ends, saying what each node listed last.
func (l *Lab) WaitMembers(ctx context.Context, nodes []int, ok func(n int, states map[string]string) bool) (map[int]map[string]string, error) {
	last := map[int]map[string]string{}
	var lastErr error
	for {
		done := true
		for _, n := range nodes {
			if states, seen := last[n]; seen && ok(n, states) {
				continue
			}
			ms, err := l.Members(ctx, n)
			if err != nil {
				lastErr, done = err, false
				continue
			}
			last[n] = MemberStates(ms)
			if !ok(n, last[n]) {
				done = false
			}
		}
		if done {
			return last, nil
		}
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("wait for members: %w; last lists %v (last error: %v)", ctx.Err(), last, lastErr)
		case <-time.After(time.Second):
		}
	}
}

// AllAlive is a WaitMembers condition: exactly the names listed, all alive.
func AllAlive(names ...string) func(int, map[string]string) bool {
	return func(_ int, states map[string]string) bool {
		if len(states) != len(names) {
			return false
		}
		for _, name := range names {
			if states[name] != "alive" {
				return false
			}
		}
		return true
	}
}
