package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/google/go-cmp/cmp"
)

// fakeCluster is a fixed member list.
type fakeCluster []Node

func (f fakeCluster) Nodes(time.Time) []Node { return f }

var (
	testNow  = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	testBoot = testNow.Add(-90 * time.Minute)
)

func testMembers() fakeCluster {
	return fakeCluster{
		{Name: "drift-a1b2c3", Addr: "10.77.0.1", Port: 7946, State: NodeAlive, StateSince: testNow.Add(-time.Hour), Self: true,
			Role: "head", Version: "v1", CPUs: 4, CPUModel: "AMD EPYC", MHz: 2596, Speed: 1.02, Load1: 0.5, Runnable: 2,
			MemTotal: 8 << 30, MemFree: 6 << 30, Jobs: 1, BootTime: testBoot, UptimeSeconds: 5400, APIPort: 7947},
		{Name: "drift-d4e5f6", Addr: "10.77.0.2", Port: 7946, State: NodeDead, StateSince: testNow.Add(-time.Minute),
			Role: "worker", Version: "v1", CPUs: 2, BootTime: testBoot},
	}
}

// syncBuffer collects logs from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mustKey(t *testing.T) clusterkey.Key {
	t.Helper()
	k, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// startServer runs a Server on a unix socket and TCP loopback and returns
// the socket path, the TCP address and the server's log.
func startServer(t *testing.T, key clusterkey.Key) (string, string, *syncBuffer) {
	return startServerRoutes(t, key, nil)
}

// startServerRoutes is startServer with extra routes.
func startServerRoutes(t *testing.T, key clusterkey.Key, routes map[string]http.Handler) (string, string, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	s := &Server{Cluster: testMembers(), Key: key, Now: func() time.Time { return testNow },
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Routes: routes}
	s.SocketPath, s.TCPAddr = filepath.Join(t.TempDir(), "run", "api.sock"), "127.0.0.1:0"
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	return s.SocketPath, ls.TCP.Addr().String(), logs
}

func TestCertificateDeterministic(t *testing.T) {
	k := mustKey(t)
	a, err := Certificate(k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Certificate(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Certificate[0], b.Certificate[0]) {
		t.Errorf("Certificate(k) differs between two calls")
	}
	c, err := Certificate(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a.Certificate[0], c.Certificate[0]) {
		t.Errorf("Certificate of two keys is the same")
	}
	if want := "drift-cluster-" + k.ID(); a.Leaf.Subject.CommonName != want {
		t.Errorf("CN = %q, want %q", a.Leaf.Subject.CommonName, want)
	}
	if strings.Contains(string(a.Certificate[0]), k.Hex()) {
		t.Errorf("certificate contains the key")
	}
}

func TestServerAndClient(t *testing.T) {
	key := mustKey(t)
	sock, tcpAddr, _ := startServer(t, key)
	remote, err := Remote(tcpAddr, key)
	if err != nil {
		t.Fatal(err)
	}
	wantNodes := []Node(testMembers())
	for _, tt := range []struct {
		name string
		c    *Client
	}{
		{"unix", Local(sock)},
		{"tcp", remote},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			nodes, err := tt.c.Nodes(ctx)
			if err != nil {
				t.Fatalf("Nodes() error %v", err)
			}
			if diff := cmp.Diff(wantNodes, nodes, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
				t.Errorf("Nodes() mismatch (-want +got):\n%s", diff)
			}
			st, err := tt.c.Status(ctx)
			if err != nil {
				t.Fatalf("Status() error %v", err)
			}
			if st.Node.Name != "drift-a1b2c3" || st.ClusterID != key.ID() || st.Alive != 1 || st.Dead != 1 {
				t.Errorf("Status() = %+v, want drift-a1b2c3 of cluster %s with 1 alive, 1 dead", st, key.ID())
			}
		})
	}
}

func TestWrongKeyRefused(t *testing.T) {
	key := mustKey(t)
	_, tcpAddr, logs := startServer(t, key)
	c, err := Remote(tcpAddr, mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Nodes(context.Background())
	var refused *RefusedError
	if !errors.As(err, &refused) {
		t.Fatalf("Nodes() with another key = %v, want a RefusedError", err)
	}
	if want := "the cluster at " + tcpAddr + " refused this key: check --key-file"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	waitLog(t, logs, "refused API connection from 127.0.0.1")
}

// A server that is not the cluster's (here: one with another key) is
// refused by the client before it sends anything.
func TestClientRefusesWrongServer(t *testing.T) {
	_, tcpAddr, _ := startServer(t, mustKey(t))
	for _, key := range []clusterkey.Key{mustKey(t)} {
		c, err := Remote(tcpAddr, key)
		if err != nil {
			t.Fatal(err)
		}
		cfg, _ := ClientTLS(key)
		conn, err := tls.Dial("tcp", tcpAddr, cfg)
		if err == nil {
			conn.Close()
			t.Errorf("tls.Dial with another key succeeded")
		} else if !errors.Is(err, ErrWrongKey) {
			t.Errorf("tls.Dial with another key = %v, want ErrWrongKey", err)
		}
		if _, err := c.Status(context.Background()); !errors.As(err, new(*RefusedError)) {
			t.Errorf("Status() = %v, want RefusedError", err)
		}
	}
}

func waitLog(t *testing.T, logs *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if strings.Contains(logs.String(), want) {
			return
		}
	}
	t.Errorf("server log lacks %q:\n%s", want, logs)
}

func TestGarbageOnTCP(t *testing.T) {
	key := mustKey(t)
	_, tcpAddr, logs := startServer(t, key)
	tests := []struct {
		name string
		send []byte
	}{
		{"plain http", []byte("GET /v1/nodes HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 4096)},
		{"tls record header then nothing", []byte{0x16, 0x03, 0x01, 0xff, 0xff}},
		{"nothing", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", tcpAddr)
			if err != nil {
				t.Fatal(err)
			}
			conn.Write(tt.send)
			conn.(*net.TCPConn).CloseWrite()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			reply, _ := io.ReadAll(conn)
			conn.Close()
			if bytes.Contains(reply, []byte("drift-a1b2c3")) {
				t.Errorf("server answered %q with data: %q", tt.send, reply)
			}
		})
	}
	waitLog(t, logs, "refused API connection from 127.0.0.1")
	// Still serving the real key afterwards.
	c, _ := Remote(tcpAddr, key)
	if _, err := c.Nodes(context.Background()); err != nil {
		t.Errorf("Nodes() after garbage = %v", err)
	}
	// Plain HTTP via a real client gets nothing either.
	resp, err := http.Get("http://" + tcpAddr + "/v1/nodes")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("plain HTTP got 200: %s", body)
		}
	}
}

func TestNoAgent(t *testing.T) {
	c := Local(filepath.Join(t.TempDir(), "api.sock"))
	_, err := c.Nodes(context.Background())
	if !errors.Is(err, ErrNoAgent) {
		t.Errorf("Nodes() without an agent = %v, want ErrNoAgent", err)
	}
}

func TestStatusBeforeJoin(t *testing.T) {
	s := &Server{Cluster: fakeCluster{}, Key: mustKey(t)}
	ts := &http.Server{Handler: s.Handler()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go ts.Serve(l)
	defer ts.Close()
	resp, err := http.Get("http://" + l.Addr().String() + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /v1/status with no members = %s, want 503", resp.Status)
	}
}

// A client that trusts the server but presents another certificate, or
// none, is refused by the server.
func TestServerRefusesClientCert(t *testing.T) {
	key := mustKey(t)
	_, tcpAddr, logs := startServer(t, key)
	good, err := Certificate(key)
	if err != nil {
		t.Fatal(err)
	}
	other, err := Certificate(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		certs []tls.Certificate
		log   string
	}{
		{"other certificate", []tls.Certificate{other}, "it does not hold this cluster's key"},
		{"no certificate", nil, "it presented no certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: tt.certs, InsecureSkipVerify: true, VerifyPeerCertificate: pinned(good)}
			c := &Client{hc: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}, base: "https://" + tcpAddr, target: tcpAddr, remote: true}
			_, err := c.Nodes(context.Background())
			if !errors.As(err, new(*RefusedError)) {
				t.Errorf("Nodes() = %v, want RefusedError", err)
			}
			waitLog(t, logs, tt.log)
		})
	}
}

func TestAddRoutesDuplicate(t *testing.T) {
	dst := map[string]http.Handler{"GET /v1/a": http.NotFoundHandler()}
	AddRoutes(dst, map[string]http.Handler{"GET /v1/b": http.NotFoundHandler()})
	if len(dst) != 2 {
		t.Fatalf("AddRoutes() left %d routes, want 2", len(dst))
	}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "GET /v1/a") {
			t.Errorf("AddRoutes() with a duplicate pattern: recover() = %v, want a panic naming GET /v1/a", r)
		}
	}()
	AddRoutes(dst, map[string]http.Handler{"GET /v1/a": http.NotFoundHandler()})
}

// PS reads both answers: PSResult, and the bare list of older agents.
func TestPSOlderAgent(t *testing.T) {
	for _, tt := range []struct {
		name, body string
		want       PSResult
	}{
		{"result", `{"jobs":[{"id":"a1b2c3-1"}],"unanswered":[{"node":"drift-d4e5f6","error":"timeout"}]}`,
			PSResult{Jobs: []JobInfo{{ID: "a1b2c3-1"}}, Unanswered: []NodeError{{Node: "drift-d4e5f6", Error: "timeout"}}}},
		{"bare list", `[{"id":"a1b2c3-1"}]`, PSResult{Jobs: []JobInfo{{ID: "a1b2c3-1"}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sock, _, _ := startServerRoutes(t, mustKey(t), map[string]http.Handler{
				"GET /v1/ps": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, tt.body) }),
			})
			got, err := Local(sock).PS(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("PS() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}
