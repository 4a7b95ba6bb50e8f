package power

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// DefaultLimit is how long a Shutdown waits for the node's jobs to leave
// before it powers off with them.
const DefaultLimit = 2 * time.Minute

// Job is a job that runs on this node.
type Job struct {
	ID    string
	Stays bool // started with drift run --stay: it never moves
}

// Shutdown is what a press of the power button starts: the node's jobs
// leave (as with drift drain), then the machine powers off. Each step is
// said on the console. A second press, or a job that has not left within
// Limit, powers off at once; jobs still here end with the machine, and
// are named.
type Shutdown struct {
	Node    string                           // this node's name
	Warning string                           // said after the first press if set (e.g. what a head takes with it)
	Drain   func()                           // required: start sending every job elsewhere
	Jobs    func() []Job                     // required: the jobs running here, moving ones included
	Say     func(format string, args ...any) // required: one console line
	Off     func() error                     // required: power off (a real one returns only on failure)
	Limit   time.Duration                    // how long jobs get to leave; 0: DefaultLimit
	Poll    time.Duration                    // how often Jobs is asked; 0: 1s
}

// Run waits for a press on presses, then drains the node and powers it
// off. It returns when ctx ends, when Off returns, or with the error of
// an Off that failed.
func (s *Shutdown) Run(ctx context.Context, presses <-chan struct{}) error {
	select {
	case <-ctx.Done():
		return nil
	case <-presses:
	}
	limit, poll := s.Limit, s.Poll
	if limit <= 0 {
		limit = DefaultLimit
	}
	if poll <= 0 {
		poll = time.Second
	}
	start := time.Now()
	jobs := s.Jobs()
	s.Say("power button: draining %s, then powering off (press again to power off now); jobs here: %d", s.Node, len(jobs))
	if s.Warning != "" {
		s.Say("power button: %s", s.Warning)
	}
	s.Drain()
	deadline := time.NewTimer(limit)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	var last []string
	for {
		jobs = s.Jobs()
		ids, moving := ids(jobs)
		switch {
		case len(jobs) == 0:
			s.Say("power off: no job runs on %s after %s; powering off", s.Node, since(start))
			return s.off()
		case len(moving) == 0:
			s.Say("power off: jobs %v stay on %s (drift run --stay) and end as it powers off now", ids, s.Node)
			return s.off()
		case !slices.Equal(ids, last):
			s.Say("power off: waiting for %s to leave %s: %v", count(len(ids)), s.Node, ids)
			last = ids
		}
		select {
		case <-ctx.Done():
			return nil
		case <-presses:
			s.Say("power button pressed again: powering %s off now; jobs %v end with it", s.Node, ids)
			return s.off()
		case <-deadline.C:
			s.Say("power off: jobs %v could not leave %s within %s (drift why JOB says why); they end as it powers off now", ids, s.Node, limit)
			return s.off()
		case <-tick.C:
		}
	}
}

// off powers off, and says so if that failed.
func (s *Shutdown) off() error {
	if err := s.Off(); err != nil {
		s.Say("error power off %s: %v", s.Node, err)
		return fmt.Errorf("power off %s: %w", s.Node, err)
	}
	return nil
}

// ids returns the ids of jobs, and of those that may move.
func ids(jobs []Job) (all, moving []string) {
	for _, j := range jobs {
		all = append(all, j.ID)
		if !j.Stays {
			moving = append(moving, j.ID)
		}
	}
	slices.Sort(all)
	slices.Sort(moving)
	return all, moving
}

// count is "1 job" or "N jobs".
func count(n int) string {
	if n == 1 {
		return "1 job"
	}
	return fmt.Sprintf("%d jobs", n)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(100 * time.Millisecond) }
