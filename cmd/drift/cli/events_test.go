package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// serveEvents answers GET /v1/events with events on a unix socket.
func serveEvents(t *testing.T, events ...api.Event) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "api.sock")
	s := &api.Server{Cluster: fakeCluster{}, SocketPath: sock, TCPAddr: "-", Logger: slog.New(slog.DiscardHandler),
		Routes: map[string]http.Handler{"GET /v1/events": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			enc := json.NewEncoder(w)
			for _, e := range events {
				enc.Encode(e)
			}
		})}}
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

func TestEvents(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	mig := api.Event{Time: at, Node: "drift-a", Kind: api.EventMigration, Fields: map[string]any{"job": "7", "freeze_seconds": 0.5, "result": "ok"}}
	sock := serveEvents(t, mig,
		api.Event{Time: at, Node: "drift-b", Kind: api.EventUnanswered, Fields: map[string]any{"peer": "drift-c", "error": "node drift-c is down"}},
		api.Event{Time: at, Node: "drift-b", Kind: api.EventLive})
	for _, tt := range []struct {
		args       []string
		wantOut    string
		wantStderr string
	}{
		{[]string{"--socket", sock}, mig.String() + "\n", "drift-c did not answer"},
		{[]string{"--socket", sock, "--json"}, `{"time":"2026-05-01T12:00:00Z","node":"drift-a","kind":"migration","fields":{"freeze_seconds":0.5,"job":"7","result":"ok"}}` + "\n", "drift-c did not answer"},
	} {
		var stdout, stderr bytes.Buffer
		if err := runEvents(context.Background(), tt.args, nil, &stdout, &stderr); err != nil {
			t.Fatalf("drift events %q: %v", tt.args, err)
		}
		if stdout.String() != tt.wantOut {
			t.Errorf("drift events %q printed %q, want %q", tt.args, stdout.String(), tt.wantOut)
		}
		if !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("drift events %q stderr = %q, want it to say %q", tt.args, stderr.String(), tt.wantStderr)
		}
	}
}

func TestCert(t *testing.T) {
	key, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "cluster.key")
	if err := clusterkey.WriteFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "prom")
	if err := runCert(context.Background(), []string{"--out", out, "--key-file", keyFile}, nil, io.Discard, io.Discard); err != nil {
		t.Fatal(err)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if _, err := tls.X509KeyPair(read(certFile), read(certKeyFile)); err != nil {
		t.Errorf("%s and %s are no key pair: %v", certFile, certKeyFile, err)
	}
	if st, err := os.Stat(filepath.Join(out, certKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("%s mode = %v, %v; want 0600", certKeyFile, st.Mode(), err)
	}
	want, _ := api.MetricsReader(key)
	if !bytes.Equal(read(certCAFile), want.CA) {
		t.Errorf("%s is not the cluster's certificate", certCAFile)
	}
	if cfg := string(read(certPromFile)); !strings.Contains(cfg, "server_name: "+api.ServerName(key)) || !strings.Contains(cfg, filepath.Join(out, certKeyFile)) {
		t.Errorf("%s lacks the server name or the key's path:\n%s", certPromFile, cfg)
	}
	if err := runCert(context.Background(), []string{"--out", out}, nil, io.Discard, io.Discard); err == nil {
		t.Error("drift cert without a key file: no error")
	}
}
