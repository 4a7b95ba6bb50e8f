package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Timeouts of the server.
const (
	writeTimeout = 10 * time.Second // a reader that keeps one event waiting longer is disconnected
	peerTimeout  = 5 * time.Second  // how long a merged listing waits for each node's events
)

// Peers are the other nodes, whose events a merged stream includes.
type Peers interface {
	Nodes() []string                         // the members not known dead, this node among them
	Client(node string) (*api.Client, error) // reaches one
}

// Server serves a Log at GET /v1/events: with local=1 this node's events,
// otherwise every node's, merged in time order (it asks each peer for its
// own).
type Server struct {
	Log   *Log  // required
	Peers Peers // nil: only this node's events are served
}

// Routes are the events endpoint, for api.Server.Routes.
func (s *Server) Routes() map[string]http.Handler {
	return map[string]http.Handler{"GET /v1/events": http.HandlerFunc(s.handle)}
}

// sender writes events to a response, one JSON object per line, each
// flushed within writeTimeout.
type sender struct {
	w   io.Writer
	rc  *http.ResponseController
	enc *json.Encoder
}

func newSender(w http.ResponseWriter) *sender {
	w.Header().Set("Content-Type", "application/x-ndjson")
	return &sender{w: w, rc: http.NewResponseController(w), enc: json.NewEncoder(w)}
}

func (s *sender) send(es ...api.Event) error {
	s.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	for _, e := range es {
		if err := s.enc.Encode(e); err != nil {
			return err
		}
	}
	return s.rc.Flush()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	q, err := api.ParseEventsQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if q.Local || s.Peers == nil {
		s.serveLocal(r.Context(), newSender(w), q)
		return
	}
	s.serveMerged(r.Context(), newSender(w), q)
}

// serveLocal sends this node's events: the newest, then with q.Follow
// the live mark and each new one.
func (s *Server) serveLocal(ctx context.Context, out *sender, q api.EventsQuery) {
	if !q.Follow {
		out.send(s.Log.Tail(q.Lines)...)
		return
	}
	old, f := s.Log.Follow(q.Lines)
	defer f.Close()
	if out.send(append(old, s.mark(api.EventLive, nil))...) != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-f.Events():
			if out.send(e) != nil {
				return
			}
		}
	}
}

// mark is a note of this node in a stream, not an event it keeps.
func (s *Server) mark(kind string, fields map[string]any) api.Event {
	return api.Event{Time: time.Now(), Node: s.Log.Self, Kind: kind, Fields: fields}
}

// feed is what one peer's stream gave before its live mark.
type feed struct {
	node string
	past []api.Event
	err  error
}

// serveMerged sends every node's events: the newest of each, merged in
// time order, with a note for each node that did not answer; then with
// q.Follow the live mark and each new event of any node as it comes.
func (s *Server) serveMerged(ctx context.Context, out *sender, q api.EventsQuery) {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var past []api.Event
	var f *Follower
	if q.Follow {
		past, f = s.Log.Follow(q.Lines)
		defer f.Close()
	} else {
		past = s.Log.Tail(q.Lines)
	}
	feeds := make(chan feed)
	live := make(chan api.Event, followQueue)
	n := 0
	for _, node := range s.Peers.Nodes() {
		if node == s.Log.Self {
			continue
		}
		n++
		wg.Go(func() { s.read(ctx, node, q, feeds, live) })
	}
	var notes []api.Event
	for range n {
		fd := <-feeds
		if fd.err != nil {
			notes = append(notes, s.mark(api.EventUnanswered, map[string]any{"peer": fd.node, "error": fd.err.Error()}))
			continue
		}
		past = append(past, fd.past...)
	}
	api.SortEvents(past)
	var once sameChange
	past = slices.DeleteFunc(past, once.again)
	if q.Follow {
		notes = append(notes, s.mark(api.EventLive, nil))
	}
	if out.send(append(past, notes...)...) != nil || !q.Follow {
		return
	}
	for {
		var e api.Event
		select {
		case <-ctx.Done():
			return
		case e = <-f.Events():
		case e = <-live:
		}
		if once.again(e) {
			continue
		}
		if out.send(e) != nil {
			return
		}
	}
}

// sameChange keeps a merged stream to one event per change of
// membership: every node sees a member join, stop answering or die, and
// records it, within moments of the others.
type sameChange map[string]time.Time

// sameChangeWindow is how far apart two nodes' records of one change
// may be.
const sameChangeWindow = 30 * time.Second

// again reports whether e records a change of membership that an event
// already sent recorded.
func (c *sameChange) again(e api.Event) bool {
	switch e.Kind {
	case api.EventJoin, api.EventSuspect, api.EventDeath:
	default:
		return false
	}
	if *c == nil {
		*c = sameChange{}
	}
	key := e.Kind + " " + fmt.Sprint(e.Fields["member"])
	if at, ok := (*c)[key]; ok && e.Time.Sub(at).Abs() < sameChangeWindow {
		return true
	}
	(*c)[key] = e.Time
	return false
}

// read reads node's own events for a merged stream: it hands its past
// (or why there is none) to feeds within peerTimeout, then with q.Follow
// passes each new event to live until ctx ends or the node goes away
// (which it notes there).
func (s *Server) read(ctx context.Context, node string, q api.EventsQuery, feeds chan<- feed, live chan<- api.Event) {
	fd := feed{node: node}
	handed := false
	hand := func() {
		if !handed {
			handed = true
			select {
			case feeds <- fd:
			case <-ctx.Done():
			}
		}
	}
	defer hand()
	c, err := s.Peers.Client(node)
	if err != nil {
		fd.err = err
		return
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(peerTimeout, cancel) // until its past has come
	defer timer.Stop()
	st, err := c.Events(sctx, api.EventsQuery{Lines: q.Lines, Follow: q.Follow, Local: true})
	if err != nil {
		fd.err = err
		return
	}
	defer st.Close()
	for {
		e, err := st.Next()
		switch {
		case err != nil && !handed:
			if errors.Is(err, io.EOF) && !q.Follow {
				err = nil
			} else if sctx.Err() != nil && ctx.Err() == nil {
				err = fmt.Errorf("no answer within %s", peerTimeout)
			}
			fd.err = err
			return
		case err != nil:
			if ctx.Err() == nil {
				note := s.mark(api.EventUnanswered, map[string]any{"peer": node, "error": "its event stream ended: " + err.Error()})
				select {
				case live <- note:
				case <-ctx.Done():
				}
			}
			return
		case !handed && e.Kind == api.EventLive:
			timer.Stop()
			hand()
		case !handed:
			fd.past = append(fd.past, e)
		default:
			select {
			case live <- e:
			case <-ctx.Done():
				return
			}
		}
	}
}
