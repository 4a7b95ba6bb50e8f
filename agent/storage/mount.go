package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

// ErrNoServer reports that there is nothing to mount yet: no head in the
// member list (the Resolve function of a Mounter returns it, wrapped).
var ErrNoServer = errors.New("no storage server known yet")

// ErrCheckTimeout reports a mount that did not answer a statfs in time:
// its server is gone or unreachable.
var ErrCheckTimeout = errors.New("no answer from the storage server")

// Mounter keeps shared storage mounted at Target. Set the fields, then
// Run; Status reports how it is going.
type Mounter struct {
	Target string // "": MountPoint

	// Resolve returns where to mount from now: the head's export, or an
	// external source. It is called before every mount and before every
	// health check (a changed source is mounted again). Required.
	Resolve func() (Source, error)

	OnMount  func(Source)  // called after every successful mount; nil: none
	Logger   *slog.Logger  // nil: slog.Default()
	Interval time.Duration // between health checks; 0: 5s
	Timeout  time.Duration // a health check that takes longer means the mount is dead; 0: 5s
	Backoff  time.Duration // first wait after a failed mount, doubled up to 15s; 0: 1s

	// The system calls, replaced by tests; nil: the real ones.
	Mount   func(src Source, target string) error
	Unmount func(target string) error // lazy: a dead mount cannot be unmounted otherwise
	// Guard keeps writes out of the bare mount point (GuardMountPoint).
	// nil: nothing.
	Guard func(target string) error
	// Probe asks the mount for its size: it reaches the server, so it may
	// block for as long as the server does not answer; nil: probe.
	Probe func(target string) (Space, error)

	mu     sync.Mutex
	status api.MountStatus
	probe  chan probeResult // the health check in flight, if one is
}

// Space is the size of a file system, in bytes.
type Space struct {
	Total, Free uint64
}

type probeResult struct {
	sp  Space
	err error
}

// ErrNotMounted reports that the mount point has nothing mounted on it
// (someone unmounted it).
var ErrNotMounted = errors.New("nothing is mounted there")

// probe is the real health check: statfs (which v9fs and NFS send to the
// server), then whether target is still a mount point (its device differs
// from its parent's; statfs cannot tell, as v9fs reports the server's
// file system type).
func probe(target string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(target, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", target, err)
	}
	var t, p unix.Stat_t
	if err := unix.Stat(target, &t); err != nil {
		return Space{}, fmt.Errorf("stat %s: %w", target, err)
	}
	if err := unix.Stat(filepath.Dir(target), &p); err != nil {
		return Space{}, fmt.Errorf("stat %s: %w", filepath.Dir(target), err)
	}
	if t.Dev == p.Dev {
		return Space{}, fmt.Errorf("%s: %w", target, ErrNotMounted)
	}
	return Space{Total: st.Blocks * uint64(st.Bsize), Free: st.Bavail * uint64(st.Bsize)}, nil
}

func (m *Mounter) target() string {
	if m.Target == "" {
		return MountPoint
	}
	return m.Target
}

func (m *Mounter) log() *slog.Logger {
	l := m.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("svc", "storage-mount")
}

// Status returns the current state of the mount.
func (m *Mounter) Status() api.MountStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.status
	s.Target = m.target()
	return s
}

func (m *Mounter) update(f func(*api.MountStatus)) {
	m.mu.Lock()
	f(&m.status)
	m.mu.Unlock()
}

// Run mounts the storage and keeps it mounted until ctx ends: it retries
// with backoff while the source is unknown or unreachable, checks the
// mount every Interval, and when a check fails or times out (the head
// rebooted, the NAS went away) it detaches the dead mount and mounts
// again. The mount stays in place when Run returns.
func (m *Mounter) Run(ctx context.Context) error {
	if m.Resolve == nil {
		return errors.New("storage mount: no Resolve function")
	}
	log := m.log()
	target := m.target()
	interval, backoff0 := orDefault(m.Interval, 5*time.Second), orDefault(m.Backoff, time.Second)
	const maxBackoff = 15 * time.Second
	// A mount left by an earlier run of this service would be stacked on.
	m.unmount(target)
	if m.Guard != nil {
		if err := m.Guard(target); err != nil {
			log.Warn("guard the shared storage mount point", "target", target, "err", err)
		}
	}

	var (
		cur     Source
		mounted bool
		backoff = backoff0
		lastErr string
	)
	fail := func(err error) {
		if err.Error() != lastErr {
			log.Warn("shared storage not mounted; retrying", "target", target, "err", err)
			lastErr = err.Error()
		}
		m.update(func(s *api.MountStatus) {
			if s.Mounted || s.Since.IsZero() {
				s.Since = time.Now()
			}
			s.Mounted, s.Healthy, s.Error, s.Source, s.FSType = false, false, err.Error(), "", ""
		})
	}
	for {
		if !mounted {
			src, err := m.Resolve()
			if err == nil {
				err = m.mount(src, target)
			}
			if err != nil {
				fail(err)
				if !sleep(ctx, backoff) {
					return nil
				}
				backoff = min(2*backoff, maxBackoff)
				continue
			}
			cur, mounted, backoff, lastErr = src, true, backoff0, ""
			_, fstype, _, _ := src.mountArgs()
			now := time.Now()
			m.update(func(s *api.MountStatus) {
				*s = api.MountStatus{Source: src.String(), FSType: fstype, Mounted: true, Healthy: true, Since: now}
			})
			log.Info("shared storage mounted", "target", target, "from", src.String())
			if m.OnMount != nil {
				m.OnMount(src)
			}
		} else if !sleep(ctx, interval) {
			return nil
		} else if src, err := m.Resolve(); err == nil && src != cur {
			log.Info("storage source changed; mounting the new one", "old", cur.String(), "new", src.String())
			m.unmount(target)
			mounted = false
			continue
		}
		sp, err := m.check(ctx, target)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			log.Warn("shared storage mount is dead; mounting again", "target", target, "from", cur.String(), "err", err)
			m.unmount(target)
			m.mu.Lock()
			m.probe = nil // a check stuck on the dead mount is abandoned
			m.mu.Unlock()
			mounted = false
			fail(fmt.Errorf("mount from %s went dead: %w", cur.String(), err))
			continue
		}
		m.update(func(s *api.MountStatus) {
			s.Healthy, s.Error, s.Checked = true, "", time.Now()
			s.Total, s.Free = sp.Total, sp.Free
		})
	}
}

// check probes target, which reaches the server, in a goroutine:
// on a dead mount the call blocks until the kernel gives up on the
// connection, so after Timeout the mount counts as dead. At most one
// check is in flight; a stuck one is abandoned when the mount is
// detached, and its goroutine ends when the kernel fails the call.
func (m *Mounter) check(ctx context.Context, target string) (Space, error) {
	m.mu.Lock()
	ch := m.probe
	if ch == nil {
		ch = make(chan probeResult, 1)
		m.probe = ch
		pr := m.Probe
		if pr == nil {
			pr = probe
		}
		go func() {
			var r probeResult
			r.sp, r.err = pr(target)
			ch <- r
		}()
	}
	m.mu.Unlock()
	t := time.NewTimer(orDefault(m.Timeout, 5*time.Second))
	defer t.Stop()
	select {
	case r := <-ch:
		m.mu.Lock()
		if m.probe == ch {
			m.probe = nil
		}
		m.mu.Unlock()
		return r.sp, r.err
	case <-t.C:
		return Space{}, fmt.Errorf("statfs %s: %w", target, ErrCheckTimeout)
	case <-ctx.Done():
		return Space{}, ctx.Err()
	}
}

func (m *Mounter) mount(src Source, target string) error {
	if m.Mount != nil {
		return m.Mount(src, target)
	}
	return MountSource(src, target)
}

func (m *Mounter) unmount(target string) {
	if m.Unmount != nil {
		m.Unmount(target)
		return
	}
	unix.Unmount(target, unix.MNT_DETACH)
}

// GuardMountPoint mounts an empty read-only file system at target unless
// something is mounted there already. The shared storage is mounted over
// it, and it shows again whenever the storage is unmounted, so a write to
// an unmounted /cluster fails (EROFS) instead of landing in the bare
// directory, where the next mount would hide it.
func GuardMountPoint(target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("guard %s: %w", target, err)
	}
	var st, parent unix.Stat_t
	if err := unix.Stat(target, &st); err != nil {
		return fmt.Errorf("guard %s: %w", target, err)
	}
	if err := unix.Stat(filepath.Dir(target), &parent); err != nil {
		return fmt.Errorf("guard %s: %w", target, err)
	}
	if st.Dev != parent.Dev {
		return nil
	}
	if err := unix.Mount("drift-unmounted", target, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555"); err != nil {
		return fmt.Errorf("guard %s: mount an empty read-only tmpfs: %w", target, err)
	}
	return nil
}

// MountSource mounts src at target with the kernel's client.
func MountSource(src Source, target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("mount %s on %s: %w", src, target, err)
	}
	dev, fstype, data, flags := src.mountArgs()
	if err := unix.Mount(dev, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s (%s %s): %w", src, target, fstype, data, err)
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// sleep waits d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
