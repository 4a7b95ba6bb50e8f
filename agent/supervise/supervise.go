// Package supervise keeps the agent's long-lived services running: each
// runs in its own goroutine, and one that returns is logged and started
// again after a backoff, until the supervisor's context ends. driftd runs
// every service under it, since driftd itself must never exit.
package supervise

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// Service is a long-lived part of the agent.
type Service struct {
	Name string
	Run  func(ctx context.Context) error // returns when ctx ends, or on failure
}

// Done wraps an error that means the service has nothing to do on this
// machine (e.g. no lab port): it is logged once and not restarted.
func Done(err error) error { return doneError{err} }

type doneError struct{ err error }

func (d doneError) Error() string { return d.err.Error() }
func (d doneError) Unwrap() error { return d.err }

// Supervisor runs services and restarts them when they fail.
type Supervisor struct {
	Logger     *slog.Logger  // nil: slog.Default()
	MinBackoff time.Duration // 0: 1s
	MaxBackoff time.Duration // 0: 30s
	Healthy    time.Duration // a run this long resets the backoff; 0: 1 minute

	wg sync.WaitGroup
}

// Run runs every service until ctx ends and waits for them all.
func (s *Supervisor) Run(ctx context.Context, services ...Service) {
	for _, svc := range services {
		s.Start(ctx, svc)
	}
	s.Wait()
}

// Start runs svc, restarting it when it fails, until ctx ends. It does
// not wait: services are started as the node learns what it needs.
func (s *Supervisor) Start(ctx context.Context, svc Service) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.keep(ctx, svc)
	}()
}

// Wait waits for every started service to return.
func (s *Supervisor) Wait() { s.wg.Wait() }

func (s *Supervisor) keep(ctx context.Context, svc Service) {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	minB, maxB, healthy := or(s.MinBackoff, time.Second), or(s.MaxBackoff, 30*time.Second), or(s.Healthy, time.Minute)
	backoff := minB
	for {
		start := time.Now()
		err := run(ctx, svc)
		if ctx.Err() != nil {
			return
		}
		var done doneError
		if errors.As(err, &done) {
			log.Info("service not needed here", "service", svc.Name, "reason", done.err)
			return
		}
		if time.Since(start) >= healthy {
			backoff = minB
		}
		log.Error("service stopped; restarting", "service", svc.Name, "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxB)
	}
}

// run calls svc.Run, turning a panic into an error so one service's bug
// does not take the agent down.
func run(ctx context.Context, svc Service) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError{r}
		}
	}()
	err = svc.Run(ctx)
	if err == nil && ctx.Err() == nil {
		err = errors.New("returned without error")
	}
	return err
}

type panicError struct{ v any }

func (p panicError) Error() string { return "panic: " + slog.AnyValue(p.v).String() }

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
