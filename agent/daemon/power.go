package daemon

import (
	"context"
	"errors"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/power"
	"github.com/driftcluster/drift/agent/storage"
	"github.com/driftcluster/drift/agent/supervise"
	"golang.org/x/sys/unix"
)

// startPower watches the machine's power button: a press drains the node
// (as drift drain does) and powers it off once no job runs here, after
// at most power.DefaultLimit; a second press powers off at once. A
// machine without a power button (no ACPI) goes on without.
func (a *agent) startPower(ctx context.Context) {
	presses := make(chan struct{}, 1)
	w := &power.Watcher{Logger: a.log}
	a.sup.Start(ctx, supervise.Service{Name: "power-button", Run: func(ctx context.Context) error {
		err := w.Run(ctx, func() {
			select {
			case presses <- struct{}{}:
			default: // a press is waiting already
			}
		})
		if errors.Is(err, power.ErrNoButton) {
			a.log.Warn("power button: none found; pressing it will not drain this node", "err", err)
			return supervise.Done(err)
		}
		return err
	}})
	s := &power.Shutdown{
		Node:  a.node.Name,
		Drain: func() { draining := true; a.bal.setMode(nil, &draining) },
		Jobs:  a.jobsHere,
		Say:   a.con.Event,
		Off:   powerOff,
	}
	if a.node.Role == boot.RoleHead {
		s.Warning = "this is the head: the cluster's shared storage and network boot go off with it"
	}
	a.sup.Start(ctx, supervise.Service{Name: "power-off", Run: func(ctx context.Context) error { return s.Run(ctx, presses) }})
}

// jobsHere lists the jobs that run on this node, and those whose moves
// from here have not ended: a job that has left its process behind is
// not running on its target until the move's commit, which needs this
// node.
func (a *agent) jobsHere() []power.Job {
	stays := map[string]bool{}
	for _, r := range a.jobs.Residents() {
		stays[r.ID] = r.Stay
	}
	seen := map[string]bool{}
	var out []power.Job
	for _, j := range a.jobs.Local() {
		if j.Node == a.node.Name && j.State != api.JobExited && !seen[j.ID] {
			seen[j.ID] = true
			out = append(out, power.Job{ID: j.ID, Stays: j.Stay || stays[j.ID]})
		}
	}
	for _, id := range a.bal.ex.Moving() {
		if !seen[id] {
			seen[id] = true
			out = append(out, power.Job{ID: id})
		}
	}
	return out
}

// powerOff writes out what the kernel holds, unmounts the shared storage
// and powers the machine off. It returns only if the machine stays on.
func powerOff() error {
	unix.Sync()
	if err := unix.Unmount(storage.MountPoint, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		// Busy (a job that could not leave has its directory there) or
		// dead (the head is gone): let go of it anyway.
		unix.Unmount(storage.MountPoint, unix.MNT_DETACH)
	}
	unix.Sync()
	return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
}
