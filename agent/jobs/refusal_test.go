package jobs

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// serve runs an API server with routes on a unix socket in dir until the
// test ends, and returns the socket.
func serve(t *testing.T, dir, name string, routes map[string]http.Handler) string {
	t.Helper()
	sock := filepath.Join(dir, name+".sock")
	s := &api.Server{Cluster: noMembers{}, SocketPath: sock, TCPAddr: "-", Routes: routes}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	return sock
}

// TestMigrateRefusals checks that each way a target can turn a job down
// before anything moves comes back as its own sentinel, beside
// ErrTargetRefused, so that the balancer can back off the right while.
func TestMigrateRefusals(t *testing.T) {
	dir := t.TempDir()
	peers := testPeers{"drift-nothere": filepath.Join(dir, "nothere.sock")} // listed, but nothing listens
	answer := func(code int, msg string) map[string]http.Handler {
		return map[string]http.Handler{"POST /v1/jobs/{id}/admit": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, msg, code)
		})}
	}
	blocked := &Manager{Self: "drift-blocked", Peers: peers, StateDir: filepath.Join(dir, "blocked"),
		Accepting: func() (bool, string) { return false, "drift-blocked is blocked" }}
	full := &Manager{Self: "drift-full", Peers: peers, StateDir: filepath.Join(dir, "full")}
	full.init()
	full.runners["bbbbbb-1"] = &runner{id: "bbbbbb-1"} // one job runs there
	peers["drift-blocked"] = serve(t, dir, "blocked", blocked.Routes())
	peers["drift-full"] = serve(t, dir, "full", full.Routes())
	// A target whose criu cpuinfo check fails answers as handleAdmit does.
	peers["drift-oldcpu"] = serve(t, dir, "oldcpu", answer(http.StatusUnprocessableEntity, "drift-oldcpu cannot run it: criu cpuinfo check: exit status 1"))
	peers["drift-broken"] = serve(t, dir, "broken", answer(http.StatusInternalServerError, "something broke"))

	src := &Manager{Self: "drift-aaaaaa", Peers: peers, StateDir: filepath.Join(dir, "aaaaaa")}
	src.init()
	const id = "bbbbbb-2"
	// The job is homed on drift-full: that target needs no stream to a
	// home elsewhere before it counts its load.
	src.runners[id] = &runner{id: id, home: "drift-full"}

	tests := []struct {
		name string
		req  api.MigrateRequest
		want error // nil: refused, of no known kind
	}{
		{"blocked target", api.MigrateRequest{To: "drift-blocked"}, ErrTargetBusy},
		{"target busier than counted", api.MigrateRequest{To: "drift-full", Expect: new(0)}, ErrTargetBusy},
		{"CPU cannot run it", api.MigrateRequest{To: "drift-oldcpu"}, ErrCPUIncompatible},
		{"no agent answers", api.MigrateRequest{To: "drift-nothere"}, ErrTargetUnreachable},
		{"not a member", api.MigrateRequest{To: "drift-nobody"}, ErrTargetUnreachable},
		{"the target fails", api.MigrateRequest{To: "drift-broken"}, nil},
	}
	kinds := []error{ErrTargetBusy, ErrCPUIncompatible, ErrTargetUnreachable}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := src.Migrate(ctx, id, tt.req)
			if !errors.Is(err, ErrTargetRefused) {
				t.Fatalf("Migrate(to %s) = %v, want a refusal (ErrTargetRefused)", tt.req.To, err)
			}
			for _, k := range kinds {
				if got, want := errors.Is(err, k), k == tt.want; got != want {
					t.Errorf("Migrate(to %s) = %v: errors.Is(%v) = %v, want %v", tt.req.To, err, k, got, want)
				}
			}
		})
	}
	// The target's own load was left alone: it admitted nothing.
	if n := full.Load(); n != 1 {
		t.Errorf("drift-full's load after refusing = %d, want 1", n)
	}
}

// A target that leaves the cluster during a migration ends it as
// unreachable, so that the balancer leaves that target alone, not the job.
func TestWatchTargetGone(t *testing.T) {
	m := &Manager{Self: "drift-aaaaaa", Peers: testPeers{"drift-aaaaaa": ""}}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	done := make(chan struct{})
	go func() { m.watchTarget(ctx, "drift-gone", cancel); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("watchTarget did not notice in 10 s that drift-gone is no member")
	}
	if err := context.Cause(ctx); !errors.Is(err, ErrTargetUnreachable) {
		t.Errorf("cause = %v, want ErrTargetUnreachable", err)
	}
}
