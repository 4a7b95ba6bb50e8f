package daemon

import (
	"sync"
	"time"
)

// pending counts, per node, events of the last Window: jobs this node has
// just placed there, which count as load on that node until its own
// gossip shows them, so that a burst of drift run does not pile onto one
// machine.
type pending struct {
	Window time.Duration

	mu     sync.Mutex
	events map[string][]time.Time
}

// add records an event for node at now.
func (p *pending) add(node string, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.events == nil {
		p.events = map[string][]time.Time{}
	}
	p.events[node] = append(p.prune(node, now), now)
}

// count is the number of node's events within the window before now.
func (p *pending) count(node string, now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.prune(node, now))
}

// prune drops node's expired events; p.mu is held.
func (p *pending) prune(node string, now time.Time) []time.Time {
	if p.events == nil {
		return nil
	}
	kept := p.events[node][:0]
	for _, t := range p.events[node] {
		if now.Sub(t) < p.Window {
			kept = append(kept, t)
		}
	}
	p.events[node] = kept
	return kept
}
