package membership

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// TestRotateKey: three members move to a new key one step at a time,
// every member staying alive to the others throughout; then a node that
// holds only the old key is refused.
func TestRotateKey(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	label := Label(old.ID())
	tune := func(c *memberlist.Config) { fastTiming(c) }
	var as []*agent
	for _, n := range []string{"drift-rot-a", "drift-rot-b", "drift-rot-c"} {
		as = append(as, startAgent(t, n, old, freePort(t), tune))
	}
	for _, a := range as[1:] {
		a.m.Join([]string{as[0].addr})
	}
	allAlive := func(what string) {
		t.Helper()
		waitFor(t, 10*time.Second, what+": every member sees 3 alive", func() bool {
			for _, a := range as {
				if a.m.Alive() != 3 {
					return false
				}
			}
			return true
		})
	}
	allAlive("before")
	if err := as[0].m.UseKey(next); err == nil {
		t.Errorf("UseKey of a key never installed succeeded")
	}
	steps := []struct {
		name string
		do   func(*Membership) error
	}{
		{"install", func(m *Membership) error { return m.InstallKey(next) }},
		{"use", func(m *Membership) error { return m.UseKey(next) }},
		{"remove old", func(m *Membership) error { return m.RemoveKey(old) }},
	}
	for _, st := range steps {
		for _, a := range as {
			if err := st.do(a.m); err != nil {
				t.Fatalf("%s on %s: %v", st.name, a.m.cfg.Name, err)
			}
			time.Sleep(300 * time.Millisecond) // the others gossip with it while it differs
		}
		allAlive("after " + st.name)
	}
	if ids := as[0].m.KeyIDs(); len(ids) != 1 || ids[0] != next.ID() {
		t.Errorf("keyring after the rotation: %v, want only %s", ids, next.ID())
	}
	// Stays alive for a while on the new key alone.
	time.Sleep(2 * time.Second)
	allAlive("later")

	// A node with the old key (and the cluster's label) is refused.
	stale := startAgent(t, "drift-rot-stale", old, freePort(t), func(c *memberlist.Config) { fastTiming(c); c.Label = label })
	stale.m.Join([]string{as[0].addr})
	waitFor(t, 10*time.Second, "a refusal logged", func() bool {
		return strings.Contains(as[0].logs.String()+as[1].logs.String()+as[2].logs.String(), "refused packet from 127.0.0.1")
	})
	time.Sleep(time.Second)
	if st := states(as[0]); len(st) != 3 {
		t.Errorf("after the rotation a member lists %v, want the three, not the node with the old key", st)
	}
}

func TestKeyringNotRunning(t *testing.T) {
	m, err := New(Config{Name: "x", BindAddr: "127.0.0.1", Key: mustKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.InstallKey(mustKey(t)); !errors.Is(err, ErrNotRunning) {
		t.Errorf("InstallKey before Run = %v, want ErrNotRunning", err)
	}
}

// TestJoinErrorOldKey: a node that holds a key the cluster no longer
// accepts (same cluster ID, so same label) is told, through OnJoinError,
// that its join was refused; the agent turns that into a console line.
func TestJoinErrorOldKey(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	label := Label(old.ID())
	member := startAgent(t, "drift-rekeyed", next, freePort(t), func(c *memberlist.Config) { fastTiming(c); c.Label = label })
	got := make(chan error, 1)
	m, err := New(Config{Name: "drift-stale", BindAddr: "127.0.0.1", Port: freePort(t), Key: old, Label: label,
		Logger: slog.New(slog.DiscardHandler), Tune: fastTiming,
		OnJoinError: func(addrs []string, err error) {
			select {
			case got <- fmt.Errorf("%v: %w", addrs, err):
			default:
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, 5*time.Second, "stale node listening", m.started)
	m.Join([]string{member.addr})
	select {
	case err := <-got:
		t.Logf("join error: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatalf("no OnJoinError after joining a cluster that holds another key")
	}
	if m.Alive() > 1 {
		t.Errorf("the stale node sees %d members", m.Alive())
	}
}
