package lab

import (
	"context"
	"fmt"
	"time"
)

// Shutdown presses node n's power button (PowerOff) and waits until the
// guest has powered itself off and its QEMU has exited, then records the
// node as stopped (StartNode boots it again). It fails, leaving the node
// running, if that takes longer than ctx allows.
func (l *Lab) Shutdown(ctx context.Context, n int) error {
	if err := l.PowerOff(ctx, n); err != nil {
		return err
	}
	return l.WaitOff(ctx, n)
}

// WaitOff waits until node n's QEMU exits by itself, as it does when its
// guest powers off, then records the node as stopped, as StopNode does.
func (l *Lab) WaitOff(ctx context.Context, n int) error {
	ns, err := l.node(n)
	if err != nil {
		return err
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for qemuRunning(ns.PID) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("node %d did not power off: %w", n, ctx.Err())
		case <-t.C:
		}
	}
	return l.StopNode(ctx, n) // QEMU has gone: this reaps it and forgets its PID
}
