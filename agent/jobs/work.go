package jobs

import (
	"slices"
	"strings"
	"time"
)

// Work left. A job's age says little of how long it has left once jobs
// of the same command, started from the same home, have ended while it
// ran: a batch of equal jobs started on one node and spread over the
// cluster ends together only if every node is left as much work, and a
// node that spent its CPU on sending jobs away is left more than its
// count of jobs says. The home knows the CPU time each of its jobs used
// (every stint tells it as it ends), and tells the node that runs each
// of its jobs how much CPU time the job's like used (FrameLike), once
// one ends: that node's balancer then knows how much CPU time the job
// still needs (balance.WorkLeft).

// likeKey is what makes two jobs alike: the same command line.
func likeKey(argv []string) string { return strings.Join(argv, "\x00") }

// likeJobs is the CPU time of the jobs homed here that ended well, by
// command line, with when each ended.
type likeJobs map[string][]likeEnd

type likeEnd struct {
	at  time.Time
	cpu time.Duration
}

// likeOf collects, of homes, the jobs that exited with code 0 and whose
// stints told their CPU time.
func likeOf(homes map[string]*homeJob) likeJobs {
	out := likeJobs{}
	for _, h := range homes {
		h.mu.Lock()
		if h.exit != nil && h.exit.Code == 0 && h.exit.Error == "" && h.cpu > 0 {
			k := likeKey(h.info.Argv)
			out[k] = append(out[k], likeEnd{h.exitAt, h.cpu})
		}
		h.mu.Unlock()
	}
	return out
}

// since is the median CPU time of the jobs of command line key that
// ended after started; 0: none.
func (l likeJobs) since(key string, started time.Time) time.Duration {
	var like []time.Duration
	for _, e := range l[key] {
		if e.at.After(started) {
			like = append(like, e.cpu)
		}
	}
	if len(like) == 0 {
		return 0
	}
	slices.Sort(like)
	return like[len(like)/2]
}

// tellLike tells the jobs homed here that run argv, once one of them has
// ended, how much CPU time those that ended since each started used: the
// node each runs on then knows how much work it has left.
func (m *Manager) tellLike(argv []string) {
	homes := m.homeJobs()
	like, key := likeOf(homes), likeKey(argv)
	for _, h := range homes {
		h.mu.Lock()
		running, started := h.exit == nil && likeKey(h.info.Argv) == key, h.info.Started
		h.mu.Unlock()
		if running {
			h.setLike(like.since(key, started))
		}
	}
}
