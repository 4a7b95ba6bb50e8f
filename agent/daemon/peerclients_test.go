package daemon

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// countingAgent serves /v1/status over TLS with key k and counts the
// connections it accepts.
func countingAgent(t *testing.T, k clusterkey.Key) (string, *atomic.Int32) {
	t.Helper()
	cfg, err := api.ServerTLS(k)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(`{"name":"n2"}`)) }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(tls.NewListener(l, cfg))
	t.Cleanup(func() { srv.Close() })
	return l.Addr().String(), &conns
}

func TestPeerClientsReuseConnections(t *testing.T) {
	k, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	addr, conns := countingAgent(t, k)
	var pc peerClients
	call := func() {
		t.Helper()
		c, err := pc.get(addr, k)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		call()
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("5 calls to one peer opened %d connections, want 1", n)
	}
	pc.forget(addr) // the peer was seen dead
	call()
	if n := conns.Load(); n != 2 {
		t.Fatalf("after forget, %d connections, want a second one", n)
	}
	// A rekey: the client under the old key is dropped for a new one.
	k2, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c1, _ := pc.get(addr, k)
	c2, err := pc.get(addr, k2)
	if err != nil {
		t.Fatal(err)
	}
	if c1 == c2 || len(pc.m) != 1 {
		t.Fatalf("a new key kept the old client: same %v, %d kept", c1 == c2, len(pc.m))
	}
}
