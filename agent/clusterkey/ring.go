package clusterkey

import (
	"errors"
	"slices"
	"sync"
)

// Source gives the key to use now: a Ring's current key, or a fixed Key.
type Source interface {
	Current() Key
}

// Current makes a fixed key a Source.
func (k Key) Current() Key { return k }

// Ring is a running agent's keys: the one it uses now (it seals gossip,
// presents and dials with it) and, while a rekey moves through the
// cluster, the other one it still accepts. A rekey installs the new key
// (accepted), uses it (current; the old one still accepted) and drops the
// old one. The cluster's ID never changes. Safe for concurrent use.
type Ring struct {
	mu    sync.Mutex
	id    string
	cur   Key
	extra []Key // accepted besides cur
}

// NewRing returns a ring holding c's key alone.
func NewRing(c Cluster) *Ring {
	if c.ID == "" {
		c.ID = c.Key.ID()
	}
	return &Ring{id: c.ID, cur: c.Key}
}

// ErrNotInstalled reports Use of a key the ring does not hold.
var ErrNotInstalled = errors.New("the key is not installed: install it first")

// ClusterID is the cluster's ID.
func (r *Ring) ClusterID() string { return r.id }

// Current is the key in use.
func (r *Ring) Current() Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cur
}

// Cluster is the cluster's ID with the key in use: what the node's key
// file holds.
func (r *Ring) Cluster() Cluster {
	return Cluster{ID: r.id, Key: r.Current()}
}

// Accepted are the keys accepted from peers, the current one first.
func (r *Ring) Accepted() []Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Key{r.cur}, r.extra...)
}

// Accepts reports whether k is accepted.
func (r *Ring) Accepts(k Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return k == r.cur || slices.Contains(r.extra, k)
}

// Install accepts k too; it reports whether k was new.
func (r *Ring) Install(k Key) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k == r.cur || slices.Contains(r.extra, k) {
		return false
	}
	r.extra = append(r.extra, k)
	return true
}

// Use makes k, installed before, the current key; the key used until now
// stays accepted until Drop.
func (r *Ring) Use(k Key) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k == r.cur {
		return nil
	}
	i := slices.Index(r.extra, k)
	if i < 0 {
		return ErrNotInstalled
	}
	r.extra[i] = r.cur
	r.cur = k
	return nil
}

// Drop stops accepting every key but the current one and returns them.
func (r *Ring) Drop() []Key {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.extra
	r.extra = nil
	return old
}
