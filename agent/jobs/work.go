package jobs

import (
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/balance"
)

// Work left. A job's age says little of how long it has left once jobs
// of the same command, started from the same home, have ended while it
// ran: a batch of equal jobs started on one node and spread over the
// cluster ends together only if every node is left as much work, and a
// node that spent its CPU on sending jobs away is left more than its
// count of jobs says. The home knows the CPU time each of its jobs used
// (every stint tells it as it ends), so it can tell how much CPU time a
// job still needs (balance.WorkLeft).

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

// workLeft is the CPU time the job h is expected to need still, ranHere
// being what its current stint has used: from the jobs like it that
// ended since it started. 0: not known.
func (l likeJobs) workLeft(h *homeJob, ranHere time.Duration) time.Duration {
	h.mu.Lock()
	started, used, key := h.info.Started, h.cpu+ranHere, likeKey(h.info.Argv)
	h.mu.Unlock()
	var like []time.Duration
	for _, e := range l[key] {
		if e.at.After(started) {
			like = append(like, e.cpu)
		}
	}
	return balance.WorkLeft(used, like)
}
