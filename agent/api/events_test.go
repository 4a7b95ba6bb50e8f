package api

import (
	"encoding/json"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEventString(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 3, 250e6, time.Local)
	for _, tt := range []struct {
		name string
		e    Event
		want string
	}{
		{"no fields", Event{Time: at, Node: "drift-a", Kind: EventJoin}, "2026-05-01 12:00:03.250 drift-a join"},
		{"fields in name order", Event{Time: at, Node: "drift-a", Kind: EventMigration,
			Fields: map[string]any{"to": "drift-b", "job": "7", "freeze_seconds": 1.25, "bytes": int64(8 << 20), "result": MigrationOK}},
			"2026-05-01 12:00:03.250 drift-a migration bytes=8388608 freeze_seconds=1.25 job=7 result=ok to=drift-b"},
		{"text with spaces quoted", Event{Time: at, Node: "drift-a", Kind: EventDecision,
			Fields: map[string]any{"reason": "drift-b runs it 2x faster", "job": ""}},
			`2026-05-01 12:00:03.250 drift-a decision job="" reason="drift-b runs it 2x faster"`},
		{"booleans", Event{Time: at, Node: "drift-a", Kind: EventStorage, Fields: map[string]any{"mounted": true}},
			"2026-05-01 12:00:03.250 drift-a storage mounted=true"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.e.String(); got != tt.want {
				t.Errorf("String() = %q, want %q", got, tt.want)
			}
		})
	}
}

// An event reads back from its JSON the same, its numbers as float64.
func TestEventJSON(t *testing.T) {
	e := Event{Time: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC), Node: "drift-a", Kind: EventMigration,
		Fields: map[string]any{"job": "7", "freeze_seconds": 1.5, "bytes": int64(1 << 20), "rounds": 2}}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "\n") {
		t.Errorf("an event's JSON spans lines: %s", b)
	}
	var got Event
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		want float64
	}{{"freeze_seconds", 1.5}, {"bytes", 1 << 20}, {"rounds", 2}} {
		if v, ok := got.Float(tt.name); !ok || v != tt.want {
			t.Errorf("Float(%q) after JSON = %v, %v; want %v", tt.name, v, ok, tt.want)
		}
		if v, ok := e.Float(tt.name); !ok || v != tt.want {
			t.Errorf("Float(%q) = %v, %v; want %v", tt.name, v, ok, tt.want)
		}
	}
	if _, ok := got.Float("job"); ok {
		t.Error(`Float("job") of a text field is ok`)
	}
	if got.Str("job") != "7" || got.Str("missing") != "" || got.Str("rounds") != "2" {
		t.Errorf("Str: job=%q missing=%q rounds=%q", got.Str("job"), got.Str("missing"), got.Str("rounds"))
	}
}

func TestEventStream(t *testing.T) {
	in := `{"time":"2026-05-01T12:00:00Z","node":"a","kind":"join","fields":{"member":"b"}}

{"time":"2026-05-01T12:00:01Z","node":"a","kind":"live"}
`
	st := NewEventStream(io.NopCloser(strings.NewReader(in)))
	var kinds []string
	for {
		e, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, e.Kind)
	}
	if diff := cmp.Diff([]string{EventJoin, EventLive}, kinds); diff != "" {
		t.Errorf("kinds read (-want +got):\n%s", diff)
	}
	if _, err := NewEventStream(io.NopCloser(strings.NewReader("{not json\n"))).Next(); err == nil {
		t.Error("Next on garbage: no error")
	}
}

func TestEventsQuery(t *testing.T) {
	for _, q := range []EventsQuery{{}, {Lines: 5}, {Follow: true}, {Lines: 3, Follow: true, Local: true}} {
		u, err := url.Parse(EventsPath(q))
		if err != nil {
			t.Fatal(err)
		}
		if u.Path != "/v1/events" {
			t.Errorf("EventsPath(%+v) = %q", q, u)
		}
		got, err := ParseEventsQuery(u.Query())
		if err != nil || got != q {
			t.Errorf("ParseEventsQuery(EventsPath(%+v)) = %+v, %v", q, got, err)
		}
	}
	if _, err := ParseEventsQuery(url.Values{"lines": {"-1"}}); err == nil {
		t.Error("lines=-1: no error")
	}
}

func TestSortEvents(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	es := []Event{{Time: t0.Add(2), Node: "a"}, {Time: t0, Node: "b"}, {Time: t0, Node: "a"}, {Time: t0.Add(1), Node: "c"}}
	SortEvents(es)
	var got []string
	for _, e := range es {
		got = append(got, e.Node)
	}
	if diff := cmp.Diff([]string{"a", "b", "c", "a"}, got); diff != "" {
		t.Errorf("SortEvents order (-want +got):\n%s", diff)
	}
}
