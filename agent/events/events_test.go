package events

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/driftcluster/drift/agent/api"
)

func jobs(es []api.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Node+":"+e.Str("job"))
	}
	return out
}

func TestLogBounds(t *testing.T) {
	l := &Log{Self: "a", Max: 3}
	for i := range 5 {
		l.Record(api.EventMigration, map[string]any{"job": fmt.Sprint(i)})
	}
	if diff := cmp.Diff([]string{"a:2", "a:3", "a:4"}, jobs(l.Tail(0))); diff != "" {
		t.Errorf("Tail(0) (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"a:4"}, jobs(l.Tail(1))); diff != "" {
		t.Errorf("Tail(1) (-want +got):\n%s", diff)
	}
	var nilLog *Log
	nilLog.Record(api.EventJoin, nil) // a service may hold no log
}

func TestRecordStampsAndObserves(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	var seen []api.Event
	l := &Log{Self: "drift-a", Now: func() time.Time { return at }, OnEvent: func(e api.Event) { seen = append(seen, e) }}
	l.Record(api.EventJoin, map[string]any{"member": "drift-b"})
	want := []api.Event{{Time: at, Node: "drift-a", Kind: api.EventJoin, Fields: map[string]any{"member": "drift-b"}}}
	if diff := cmp.Diff(want, l.Tail(0)); diff != "" {
		t.Errorf("kept (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, seen); diff != "" {
		t.Errorf("OnEvent saw (-want +got):\n%s", diff)
	}
}

// A follower that does not read costs the recorder nothing; it counts
// what it lost.
func TestFollowerFallsBehind(t *testing.T) {
	l := &Log{Self: "a"}
	_, f := l.Follow(0)
	defer f.Close()
	done := make(chan struct{})
	go func() {
		for i := range followQueue + 10 {
			l.Record(api.EventJoin, map[string]any{"job": fmt.Sprint(i)})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Record blocked on a follower that does not read")
	}
	if f.Dropped() != 10 {
		t.Errorf("Dropped() = %d, want 10", f.Dropped())
	}
}

// fakePeers are other nodes' event servers.
type fakePeers map[string]*api.Client

func (p fakePeers) Nodes() []string {
	var out []string
	for n := range p {
		out = append(out, n)
	}
	return append(out, "b") // the node itself, which the server leaves out
}

func (p fakePeers) Client(node string) (*api.Client, error) {
	if c, ok := p[node]; ok && c != nil {
		return c, nil
	}
	return nil, fmt.Errorf("node %s is down", node)
}

type noNodes struct{}

func (noNodes) Nodes(time.Time) []api.Node { return nil }

// serve runs s behind a real API server on a unix socket.
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

func TestMergedEvents(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func(d time.Duration) func() time.Time { return func() time.Time { return t0.Add(d) } }
	logA, logB := &Log{Self: "a"}, &Log{Self: "b"}
	logA.Now, logB.Now = clock(1*time.Second), clock(2*time.Second)
	logA.Record(api.EventMigration, map[string]any{"job": "1"})
	logB.Record(api.EventMigration, map[string]any{"job": "2"})
	logA.Now = clock(3 * time.Second)
	logA.Record(api.EventMigration, map[string]any{"job": "3"})
	a := serve(t, &Server{Log: logA})
	b := serve(t, &Server{Log: logB, Peers: fakePeers{"a": a, "c": nil}})
	logB.Now = nil
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	read := func(q api.EventsQuery) []api.Event {
		t.Helper()
		st, err := b.Events(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		var es []api.Event
		for {
			e, err := st.Next()
			if err != nil {
				return es
			}
			es = append(es, e)
		}
	}
	all := read(api.EventsQuery{})
	if len(all) != 4 || all[3].Kind != api.EventUnanswered || all[3].Str("peer") != "c" {
		t.Fatalf("merged events = %v, want three and a note that c did not answer", all)
	}
	if diff := cmp.Diff([]string{"a:1", "b:2", "a:3"}, jobs(all[:3])); diff != "" {
		t.Errorf("merged events in time order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b:2"}, jobs(read(api.EventsQuery{Local: true}))); diff != "" {
		t.Errorf("local events (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"b:2", "a:3"}, jobs(read(api.EventsQuery{Lines: 1})[:2])); diff != "" {
		t.Errorf("newest event of each node (-want +got):\n%s", diff)
	}

	// Follow: the past merged, the live mark, then each new event of
	// either node as it comes.
	st, err := b.Events(ctx, api.EventsQuery{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var kinds []string
	for {
		e, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
		if e.Kind == api.EventLive {
			break
		}
	}
	if want := "migration migration migration unanswered live"; strings.Join(kinds, " ") != want {
		t.Errorf("followed stream began %q, want %q", kinds, want)
	}
	for _, l := range []*Log{logA, logB, logA} {
		l.Record(api.EventDeath, map[string]any{"job": "x"})
		e, err := st.Next()
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind != api.EventDeath || e.Node != l.Self {
			t.Errorf("followed event = %+v, want the death %s recorded", e, l.Self)
		}
	}
}

// Each node records a member's join; the merged stream says it once. A
// member that dies and joins again later is said again, and other kinds
// of event are never folded.
func TestSameChangeOnce(t *testing.T) {
	t0 := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	ev := func(sec int, node, kind, member string) api.Event {
		return api.Event{Time: t0.Add(time.Duration(sec) * time.Second), Node: node, Kind: kind, Fields: map[string]any{"member": member, "job": member}}
	}
	in := []api.Event{
		ev(0, "a", api.EventJoin, "c"),
		ev(1, "b", api.EventJoin, "c"),
		ev(1, "c", api.EventJoin, "c"),
		ev(2, "a", api.EventJoin, "b"),
		ev(20, "a", api.EventDeath, "c"),
		ev(21, "b", api.EventDeath, "c"),
		ev(90, "a", api.EventJoin, "c"),
		ev(91, "a", api.EventMigration, "x"),
		ev(91, "b", api.EventMigration, "x"),
	}
	var once sameChange
	var got []string
	for _, e := range in {
		if !once.again(e) {
			got = append(got, fmt.Sprintf("%s %s %v", e.Node, e.Kind, e.Fields["member"]))
		}
	}
	want := []string{"a join c", "a join b", "a death c", "a join c", "a migration x", "b migration x"}
	if !slices.Equal(got, want) {
		t.Errorf("merged: %q, want %q", got, want)
	}
}
