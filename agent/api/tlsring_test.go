package api

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// TestRingServerTLS: while a rekey moves through the cluster an agent
// answers clients of either key, each with its own key's certificate
// (chosen by SNI); once the old key is dropped its clients are refused,
// on new connections and on the keep-alive ones opened before.
func TestRingServerTLS(t *testing.T) {
	old, next := mustKey(t), mustKey(t)
	ring := clusterkey.NewRing(clusterkey.Of(old))
	s := &Server{Cluster: testMembers(), Keys: ring, Logger: slog.New(slog.DiscardHandler),
		SocketPath: filepath.Join(t.TempDir(), "api.sock"), TCPAddr: "127.0.0.1:0"}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ls.TCP.Addr().String()

	status := func(k clusterkey.Key) (Status, error) {
		c, err := Remote(addr, k)
		if err != nil {
			t.Fatal(err)
		}
		return c.Status(context.Background())
	}
	if _, err := status(next); !errors.As(err, new(*RefusedError)) {
		t.Errorf("a key not installed: %v, want RefusedError", err)
	}
	ring.Install(next)
	for _, k := range []clusterkey.Key{old, next} {
		st, err := status(k)
		if err != nil || st.ClusterID != old.ID() || st.KeyID != old.ID() {
			t.Errorf("installed, client of key %s: %+v, %v; want the cluster %s on key %s", k.ID(), st, err, old.ID(), old.ID())
		}
	}
	kept, err := Remote(addr, old) // a keep-alive connection from before the drop
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kept.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := ring.Use(next); err != nil {
		t.Fatal(err)
	}
	if st, err := status(old); err != nil || st.KeyID != next.ID() {
		t.Errorf("used, client of the old key: %+v, %v; want answers on key %s", st, err, next.ID())
	}
	ring.Drop()
	if _, err := status(old); !errors.As(err, new(*RefusedError)) {
		t.Errorf("dropped, new connection with the old key: %v, want RefusedError", err)
	}
	if _, err := kept.Status(context.Background()); err == nil {
		t.Errorf("dropped, a connection opened with the old key is still answered")
	}
	if st, err := status(next); err != nil || st.KeyID != next.ID() || st.ClusterID != old.ID() {
		t.Errorf("dropped, client of the new key: %+v, %v", st, err)
	}
}
