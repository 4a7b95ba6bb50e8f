package logring

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/driftcluster/drift/agent/api"
)

func TestRingLines(t *testing.T) {
	for _, tt := range []struct {
		name   string
		ring   func() *Ring
		writes []string
		tail   int
		want   []string
	}{
		{"whole lines", newRing(0, 0), []string{"a\nb\n"}, 0, []string{"a", "b"}},
		{"split line", newRing(0, 0), []string{"hel", "lo\nwor", "ld\n"}, 0, []string{"hello", "world"}},
		{"console CRLF", newRing(0, 0), []string{"drift: ready\r\n"}, 0, []string{"drift: ready"}},
		{"unfinished line waits", newRing(0, 0), []string{"a\nb"}, 0, []string{"a"}},
		{"tail", newRing(0, 0), []string{"1\n2\n3\n4\n"}, 2, []string{"3", "4"}},
		{"max lines", newRing(3, 0), []string{"1\n2\n3\n4\n5\n"}, 0, []string{"3", "4", "5"}},
		{"max bytes", newRing(0, 4), []string{"aa\nbb\ncc\n"}, 0, []string{"bb", "cc"}},
		{"one line over max bytes is kept", newRing(0, 2), []string{"abcdef\n"}, 0, []string{"abcdef"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := tt.ring()
			for _, w := range tt.writes {
				if n, err := r.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if diff := cmp.Diff(tt.want, r.Tail(tt.tail)); diff != "" {
				t.Errorf("Tail(%d) mismatch (-want +got):\n%s", tt.tail, diff)
			}
		})
	}
}

func newRing(lines, bytes int) func() *Ring {
	return func() *Ring { return &Ring{MaxLines: lines, MaxBytes: bytes} }
}

// A follower that never reads does not slow the writer; when it reads
// again it learns how many lines it lost.
func TestFollowerFallsBehind(t *testing.T) {
	r := &Ring{}
	old, f := r.Follow(0)
	defer f.Close()
	if len(old) != 0 {
		t.Fatalf("Follow on an empty ring returned %q", old)
	}
	const n = followQueue + 100
	done := make(chan struct{})
	go func() {
		for i := range n {
			fmt.Fprintf(r, "line %d\n", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Write blocked on a follower that does not read")
	}
	for i := range followQueue {
		if l := <-f.Lines(); l != fmt.Sprintf("line %d", i) {
			t.Fatalf("line %d = %q", i, l)
		}
	}
	fmt.Fprintf(r, "after\n")
	if l := <-f.Lines(); !strings.Contains(l, "100 lines dropped") {
		t.Errorf("first line after falling behind = %q, want a note of 100 dropped lines", l)
	}
	if l := <-f.Lines(); l != "after" {
		t.Errorf("line after the note = %q, want %q", l, "after")
	}
}

// serve runs a log Server for node self behind a real API server on a
// unix socket.
func serve(t *testing.T, s *Server) *api.Client {
	t.Helper()
	srv := &api.Server{Cluster: noNodes{}, SocketPath: filepath.Join(t.TempDir(), "api.sock"), TCPAddr: "-", Routes: s.Routes()}
	ls, err := srv.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	return api.Local(srv.SocketPath)
}

type noNodes struct{}

func (noNodes) Nodes(time.Time) []api.Node { return nil }

func TestServeAndForward(t *testing.T) {
	ringA, ringB := &Ring{}, &Ring{}
	a := serve(t, &Server{Ring: ringA, Self: "drift-aaaaaa"})
	b := serve(t, &Server{Ring: ringB, Self: "drift-bbbbbb", Client: func(node string) (*api.Client, error) {
		if node == "drift-aaaaaa" {
			return a, nil
		}
		return nil, fmt.Errorf("no node %s in the cluster", node)
	}})
	fmt.Fprint(ringA, "a1\na2\na3\n")
	fmt.Fprint(ringB, "b1\n")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(c *api.Client, node string, q api.LogsQuery) string {
		t.Helper()
		body, err := c.Logs(ctx, node, q)
		if err != nil {
			t.Fatalf("Logs(%q, %+v): %v", node, q, err)
		}
		defer body.Close()
		out, _ := io.ReadAll(body)
		return string(out)
	}
	for _, tt := range []struct {
		c    *api.Client
		node string
		q    api.LogsQuery
		want string
	}{
		{b, "", api.LogsQuery{}, "b1\n"},
		{b, "drift-bbbbbb", api.LogsQuery{}, "b1\n"},
		{b, "drift-aaaaaa", api.LogsQuery{}, "a1\na2\na3\n"},
		{b, "drift-aaaaaa", api.LogsQuery{Lines: 2}, "a2\na3\n"},
	} {
		if got := read(tt.c, tt.node, tt.q); got != tt.want {
			t.Errorf("Logs(%q, %+v) = %q, want %q", tt.node, tt.q, got, tt.want)
		}
	}
	if _, err := b.Logs(ctx, "drift-cccccc", api.LogsQuery{}); err == nil || !strings.Contains(err.Error(), "no node drift-cccccc") {
		t.Errorf("Logs of an unknown node: %v, want an error naming it", err)
	}

	// Follow through b: the old lines, then each new one as it comes.
	body, err := b.Logs(ctx, "drift-aaaaaa", api.LogsQuery{Lines: 1, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	br := bufio.NewReader(body)
	expect := func(want string) {
		t.Helper()
		l, err := br.ReadString('\n')
		if err != nil || l != want+"\n" {
			t.Fatalf("followed line = %q, %v; want %q", l, err, want)
		}
	}
	expect("a3")
	fmt.Fprint(ringA, "a4\n")
	expect("a4")
	fmt.Fprint(ringA, "a5\n")
	expect("a5")
}

// A follower whose reader has stalled is disconnected, and the ring's
// writer never waits for it.
func TestStalledFollowerDoesNotBlock(t *testing.T) {
	r := &Ring{}
	c := serve(t, &Server{Ring: r, Self: "drift-aaaaaa"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	body, err := c.Logs(ctx, "", api.LogsQuery{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close() // never read
	line := strings.Repeat("x", 1000) + "\n"
	done := make(chan struct{})
	go func() {
		for range 20000 { // 20 MB: far more than the socket buffers hold
			io.WriteString(r, line)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the log's writer blocked behind a stalled reader")
	}
}
