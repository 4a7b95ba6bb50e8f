//go:build linux

package migrate

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
func (d *refusingDest) Restore(ctx context.Context) error { return nil }
func (d *refusingDest) Discard(ctx context.Context) error { d.discarded++; return nil }
func (d *refusingDest) Commit(ctx context.Context) error  { return nil }

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
