package balance

import (
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// record passes an event to Event, if set.
func (e *Executor) record(kind string, fields map[string]any) {
	if e.Event != nil {
		e.Event(kind, fields)
	}
}

// decisionEvent is the balancer's choice of a move, with its reason.
func decisionEvent(mv Move, expect int) (string, map[string]any) {
	return api.EventDecision, map[string]any{"job": mv.Job, "to": mv.To, "reason": mv.Reason, "target_jobs": expect}
}

// refusalEvent is a move that did not happen: refused by its target (of
// the kind given) or failed, and when the balancer tries again.
func refusalEvent(mv Move, kind string, s strike, now time.Time, err error) (string, map[string]any) {
	f := map[string]any{"job": mv.Job, "to": mv.To, "refusal": kind, "strikes": s.n, "retry_seconds": s.retry.Sub(now).Seconds()}
	if err != nil {
		f["error"] = err.Error()
	}
	return api.EventRefusal, f
}
