package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Event kinds: what happened. Each event carries the node that saw it
// and fields that depend on its kind (named in the comments).
const (
	EventJoin      = "join"      // a member joined or came back: member, addr
	EventSuspect   = "suspect"   // a member stopped answering: member
	EventDeath     = "death"     // a member was declared dead: member
	EventMigration = "migration" // a move from this node: job, to, result, freeze_seconds, total_seconds, bytes, rounds, reason, error
	EventDecision  = "decision"  // the balancer chose a move: job, to, reason
	EventRefusal   = "refusal"   // a balancer's move was refused or failed: job, to, refusal, retry_seconds, error
	EventNetboot   = "netboot"   // a network-booting machine reached a stage: mac, stage
	EventStorage   = "storage"   // /cluster changed: mounted, healthy, source, error
	EventRecovery  = "recovery"  // a job started again from its checkpoint, its node dead: job, from, to, checkpoint_age_s, restore_s, error

	// EventLive is no event but a mark in a followed stream: the events
	// before it were the node's (or the cluster's) recent past, those
	// after it happen now. Readers that print events skip it.
	EventLive = "live"
	// EventUnanswered is no event but a note in a cluster-wide stream: a
	// node did not answer (fields peer, error), so its events are missing.
	EventUnanswered = "unanswered"
)

// Migration results: the result field of an EventMigration and the
// result label of the drift_migrations_total metric.
const (
	MigrationOK      = "ok"      // the job runs on the target
	MigrationRefused = "refused" // the target refused it before anything moved
	MigrationFailed  = "failed"  // it failed on the way; the job runs here still
)

// MigrationResults lists every migration result.
var MigrationResults = []string{MigrationOK, MigrationRefused, MigrationFailed}

// Event is one thing that happened in the cluster, as a node saw it.
// GET /v1/events answers events as JSON, one object per line.
type Event struct {
	Time   time.Time      `json:"time"`
	Node   string         `json:"node"` // the node that saw it
	Kind   string         `json:"kind"`
	Fields map[string]any `json:"fields,omitempty"` // strings, numbers and booleans
}

// Float returns the numeric field name: false when it is missing or not
// a number. Numbers are float64 once decoded from JSON, and any Go number
// before.
func (e Event) Float(name string) (float64, bool) {
	switch v := e.Fields[name].(type) {
	case float64:
		return v, true
	case float32:
		return float64(v), true
	case int:
		return float64(v), true
	case int64:
		return float64(v), true
	case uint64:
		return float64(v), true
	case int32:
		return float64(v), true
	case json.Number:
		f, err := v.Float64()
		return f, err == nil
	}
	return 0, false
}

// Str returns the field name as text ("" when it is missing).
func (e Event) Str(name string) string {
	v, ok := e.Fields[name]
	if !ok || v == nil {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return fmt.Sprint(v)
}

// String is the event on one line, as `drift events` prints it: its time,
// node, kind and fields in name order (times in seconds to the
// millisecond; text with spaces quoted).
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Time.Local().Format("2006-01-02 15:04:05.000"))
	b.WriteString(" " + e.Node + " " + e.Kind)
	names := make([]string, 0, len(e.Fields))
	for n := range e.Fields {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		b.WriteString(" " + n + "=")
		switch v := e.Fields[n].(type) {
		case string:
			if v == "" || strings.ContainsAny(v, " \t\n\"=") {
				v = strconv.Quote(v)
			}
			b.WriteString(v)
		default:
			if f, ok := e.Float(n); ok {
				b.WriteString(strconv.FormatFloat(f, 'f', -1, 64))
				continue
			}
			fmt.Fprint(&b, v)
		}
	}
	return b.String()
}

// SortEvents orders events by time, then node, stably.
func SortEvents(es []Event) {
	slices.SortStableFunc(es, func(a, b Event) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.Node, b.Node)
	})
}

// EventsQuery asks for events: GET /v1/events?lines=N&follow=1&local=1.
type EventsQuery struct {
	Lines  int  // the newest Lines events of each node; 0: all they keep
	Follow bool // then an EventLive mark and every new event, until the caller hangs up
	Local  bool // the answering node's events only; otherwise every node's, merged
}

// EventsPath is the path and query of q.
func EventsPath(q EventsQuery) string {
	v := url.Values{}
	if q.Lines > 0 {
		v.Set("lines", strconv.Itoa(q.Lines))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	if q.Local {
		v.Set("local", "1")
	}
	p := "/v1/events"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return p
}

// ParseEventsQuery reads an EventsQuery from a request's query.
func ParseEventsQuery(v url.Values) (EventsQuery, error) {
	var q EventsQuery
	if s := v.Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, &StatusError{Code: http.StatusBadRequest, Msg: "events: lines= wants a number of events, 0 or more", Err: ErrBadRequest}
		}
		q.Lines = n
	}
	yes := func(k string) bool { return v.Get(k) == "1" || v.Get(k) == "true" }
	q.Follow, q.Local = yes("follow"), yes("local")
	return q, nil
}

// EventStream reads the events an agent answers, one at a time.
type EventStream struct {
	body io.ReadCloser
	sc   *bufio.Scanner
}

// NewEventStream reads events from r, one JSON object per line.
func NewEventStream(r io.ReadCloser) *EventStream {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), MaxEventBytes)
	return &EventStream{body: r, sc: sc}
}

// MaxEventBytes bounds one event's JSON line.
const MaxEventBytes = 1 << 20

// Next returns the next event; io.EOF when the stream ended.
func (s *EventStream) Next() (Event, error) {
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return Event{}, fmt.Errorf("read event: %w", err)
		}
		return e, nil
	}
	if err := s.sc.Err(); err != nil {
		return Event{}, fmt.Errorf("read events: %w", err)
	}
	return Event{}, io.EOF
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }

// Events opens the agent's event stream for q. Close it when done; with
// q.Follow it ends only when ctx does or the agent goes away.
func (c *Client) Events(ctx context.Context, q EventsQuery) (*EventStream, error) {
	if !q.Follow {
		var cancel context.CancelFunc
		ctx, cancel = withDefaultTimeout(ctx, DefaultCallTimeout)
		body, err := c.open(ctx, EventsPath(q))
		if err != nil {
			cancel()
			return nil, err
		}
		return NewEventStream(cancelOnClose{body, cancel}), nil
	}
	body, err := c.open(ctx, EventsPath(q))
	if err != nil {
		return nil, err
	}
	return NewEventStream(body), nil
}

// open GETs path and returns the body of a 200 answer.
func (c *Client) open(ctx context.Context, path string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.callClient().Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, statusError(resp)
	}
	return resp.Body, nil
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c cancelOnClose) Close() error { err := c.ReadCloser.Close(); c.cancel(); return err }
