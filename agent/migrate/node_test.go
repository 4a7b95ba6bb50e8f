//go:build linux

package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// fakeCriu writes a criu that appends its arguments to a log and exits
// with code, and returns its path and the log's.
func fakeCriu(t *testing.T, code string) (criu, log string) {
	t.Helper()
	dir := t.TempDir()
	criu, log = filepath.Join(dir, "criu"), filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$@\" >> " + log + "\nexit " + code + "\n"
	if err := os.WriteFile(criu, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return criu, log
}

func calls(t *testing.T, log string) int {
	b, err := os.ReadFile(log)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "\n")
}

// CheckCPU asks CRIU once per source CPU, and remembers a refusal as
// well as a fit.
func TestCheckCPUCached(t *testing.T) {
	for _, tt := range []struct {
		name string
		code string
		fits bool
	}{
		{"fits", "0", true},
		{"refused", "1", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			criu, log := fakeCriu(t, tt.code)
			n := &Node{CriuPath: criu}
			for i := range 3 {
				err := n.CheckCPU(context.Background(), []byte("source cpu"))
				if tt.fits && err != nil {
					t.Fatalf("CheckCPU #%d = %v, want nil", i, err)
				}
				if !tt.fits && !errors.Is(err, ErrCPUIncompatible) {
					t.Fatalf("CheckCPU #%d = %v, want ErrCPUIncompatible", i, err)
				}
			}
			if got := calls(t, log); got != 1 {
				t.Errorf("criu ran %d times for three checks of one CPU, want 1", got)
			}
			n.CheckCPU(context.Background(), []byte("another cpu"))
			if got := calls(t, log); got != 2 {
				t.Errorf("criu ran %d times after a check of another CPU, want 2", got)
			}
		})
	}
}

// refusingDest turns every job down at admission.
type refusingDest struct {
	err                error
	sent, discarded    int
	admittedWithCPUImg bool
}

func (d *refusingDest) Admit(ctx context.Context, cpuinfo []byte) (int, error) {
	d.admittedWithCPUImg = cpuinfo != nil
	return 0, d.err
}

func (d *refusingDest) Send(ctx context.Context, name string, r io.Reader) (int64, error) {
	d.sent++
	return 0, nil
}
func (d *refusingDest) Restore(ctx context.Context) error         { return nil }
func (d *refusingDest) Discard(ctx context.Context) error         { d.discarded++; return nil }
func (d *refusingDest) Commit(ctx context.Context) error          { return nil }
func (d *refusingDest) Started(ctx context.Context) (bool, error) { return false, nil }

// A refusal at admission moves nothing and says what kind it was.
func TestMoveRefused(t *testing.T) {
	for _, kind := range []error{ErrTargetBusy, ErrCPUIncompatible, ErrTargetUnreachable} {
		t.Run(kind.Error(), func(t *testing.T) {
			criu, _ := fakeCriu(t, "1") // no CPU description: the target is asked without one
			d := &refusingDest{err: kind}
			_, err := (&Node{CriuPath: criu, WorkDir: t.TempDir()}).Move(context.Background(), Job{Pid: os.Getpid()}, d, func() {})
			if !errors.Is(err, ErrRefused) || !errors.Is(err, kind) {
				t.Errorf("Move to a target that refuses with %v = %v, want ErrRefused and the kind", kind, err)
			}
			if d.sent != 0 || d.admittedWithCPUImg {
				t.Errorf("after a refusal: %d images sent, admitted with a CPU image %v; want none", d.sent, d.admittedWithCPUImg)
			}
		})
	}
}

// commitDest answers Commit with the errors given in turn (then the last
// one again) and Started with started, startErr.
type commitDest struct {
	refusingDest
	errs     []error
	commits  int
	started  bool
	startErr error
	asked    bool
}

func (d *commitDest) Commit(ctx context.Context) error {
	d.commits++
	return d.errs[min(d.commits, len(d.errs))-1]
}

func (d *commitDest) Started(ctx context.Context) (bool, error) {
	d.asked = true
	return d.started, d.startErr
}

// TestCommit: the copy on the source resumes only when the target's
// cannot run, is killed when it runs, and when nobody can tell.
func TestCommit(t *testing.T) {
	dialErr := fmt.Errorf("drift agent at x: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})
	lostAnswer := fmt.Errorf("drift agent at x: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET})
	refused := fmt.Errorf("x: %w: 404 no restored copy of it is held here", ErrNotCommitted)
	gone, cancel := context.WithCancel(context.Background())
	cancel() // the target left the cluster
	long := time.Now().Add(-HoldTimeout - 11*time.Second)
	for _, tc := range []struct {
		name    string
		ctx     context.Context
		held    time.Time
		d       *commitDest
		want    error // nil, ErrNotCommitted or ErrCommitLost
		commits int
		askHome bool
	}{
		{"answered", context.Background(), time.Now(), &commitDest{errs: []error{nil}}, nil, 1, false},
		{"answer lost once, then answered", context.Background(), time.Now(), &commitDest{errs: []error{lostAnswer, nil}}, nil, 2, false},
		{"the target holds no copy", context.Background(), time.Now(), &commitDest{errs: []error{refused}}, ErrNotCommitted, 1, false},
		{"target gone, never reached", gone, time.Now(), &commitDest{errs: []error{dialErr}}, ErrNotCommitted, 1, false},
		{"never reached, hold over", context.Background(), long, &commitDest{errs: []error{dialErr}}, ErrNotCommitted, 1, false},
		{"maybe reached, home says it runs there", gone, long, &commitDest{errs: []error{lostAnswer}, started: true}, nil, 1, true},
		{"maybe reached, home says it never started", gone, long, &commitDest{errs: []error{lostAnswer}}, ErrNotCommitted, 1, true},
		{"maybe reached, home silent", gone, long, &commitDest{errs: []error{lostAnswer}, startErr: errors.New("no answer")}, ErrCommitLost, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := commit(tc.ctx, tc.d, tc.held, slog.New(slog.DiscardHandler))
			switch {
			case tc.want == nil && err != nil, tc.want != nil && !errors.Is(err, tc.want):
				t.Errorf("commit: %v, want %v", err, tc.want)
			case tc.d.commits != tc.commits:
				t.Errorf("%d commits sent, want %d", tc.d.commits, tc.commits)
			case tc.d.asked != tc.askHome:
				t.Errorf("home asked: %v, want %v", tc.d.asked, tc.askHome)
			}
			if tc.want == ErrNotCommitted && errors.Is(err, ErrCommitLost) {
				t.Errorf("commit: %v is both", err)
			}
		})
	}
}
