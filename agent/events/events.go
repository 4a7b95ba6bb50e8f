// Package events is a node's part of the cluster's event stream: the
// agent's services record what happens (joins, deaths, migrations,
// balancer decisions and refusals, netboot stages, storage changes) in a
// Log, which keeps the newest in a bounded ring; its Server serves them
// at GET /v1/events and merges every node's for `drift events` (and, to
// come, `drift top` and `drift ui`).
package events

import (
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Defaults for a Log's bounds.
const (
	DefaultMax  = 2000 // events kept
	followQueue = 256  // events a follower may fall behind before events are dropped for it
)

// Log is a node's recent events: the newest Max of them, oldest first.
// Record never blocks on a reader. The zero Log records events of node
// "" at time.Now; set Self first.
type Log struct {
	Self    string           // this node's name, the Node of every event
	Max     int              // 0: DefaultMax
	Now     func() time.Time // nil: time.Now
	OnEvent func(api.Event)  // called with each event after it is kept (the metrics count them); nil: none

	mu        sync.Mutex
	events    []api.Event
	followers map[*Follower]struct{}
}

// Record keeps an event of kind with fields (which it owns from now on).
// A nil Log records nothing, so services may hold one unset.
func (l *Log) Record(kind string, fields map[string]any) {
	if l == nil {
		return
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	e := api.Event{Time: now(), Node: l.Self, Kind: kind, Fields: fields}
	l.Add(e)
	if l.OnEvent != nil {
		l.OnEvent(e)
	}
}

// Add keeps e as it is.
func (l *Log) Add(e api.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	max := l.Max
	if max <= 0 {
		max = DefaultMax
	}
	l.events = append(l.events, e)
	if over := len(l.events) - max; over > 0 {
		l.events = append(l.events[:0:0], l.events[over:]...)
	}
	for f := range l.followers {
		f.push(e)
	}
}

// Tail returns the newest n events, oldest first (n <= 0: all kept).
func (l *Log) Tail(n int) []api.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tail(n)
}

func (l *Log) tail(n int) []api.Event {
	es := l.events
	if n > 0 && n < len(es) {
		es = es[len(es)-n:]
	}
	return append([]api.Event(nil), es...)
}

// Follow returns the newest n events (n <= 0: all) and a Follower that
// receives every event added after them, none lost or repeated in
// between unless it falls behind. Close the Follower when done.
func (l *Log) Follow(n int) ([]api.Event, *Follower) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := &Follower{l: l, c: make(chan api.Event, followQueue)}
	if l.followers == nil {
		l.followers = map[*Follower]struct{}{}
	}
	l.followers[f] = struct{}{}
	return l.tail(n), f
}

// Follower receives a Log's new events. One that falls more than
// followQueue events behind loses events rather than slowing the
// services that record them; Dropped says how many so far.
type Follower struct {
	l       *Log
	c       chan api.Event
	mu      sync.Mutex
	dropped int
}

// push queues e, or counts it as dropped. The Log's lock is held.
func (f *Follower) push(e api.Event) {
	select {
	case f.c <- e:
	default:
		f.mu.Lock()
		f.dropped++
		f.mu.Unlock()
	}
}

// Events delivers the events added since Follow.
func (f *Follower) Events() <-chan api.Event { return f.c }

// Dropped is the number of events this follower lost by falling behind.
func (f *Follower) Dropped() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Close stops the deliveries.
func (f *Follower) Close() {
	f.l.mu.Lock()
	defer f.l.mu.Unlock()
	delete(f.l.followers, f)
}
