package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

// fakeKernel stands in for mount(2), umount2(2) and statfs(2).
type fakeKernel struct {
	mu       sync.Mutex
	server   bool          // the server answers
	hang     chan struct{} // non-nil: statfs blocks until it is closed
	mounted  string        // what is mounted at the target
	mounts   []string      // every successful mount, in order
	unmounts int
}

func (k *fakeKernel) mount(src Source, target string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if !k.server {
		return fmt.Errorf("mount %s on %s: %w", src, target, unix.ECONNREFUSED)
	}
	k.mounted = src.String()
	k.mounts = append(k.mounts, k.mounted)
	return nil
}

func (k *fakeKernel) unmount(string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.mounted = ""
	k.unmounts++
	return nil
}

func (k *fakeKernel) probe(target string) (Space, error) {
	k.mu.Lock()
	hang, mounted, server := k.hang, k.mounted, k.server
	k.mu.Unlock()
	if hang != nil {
		<-hang
		return Space{}, unix.EIO
	}
	if mounted == "" {
		return Space{}, ErrNotMounted
	}
	if !server {
		return Space{}, unix.EIO
	}
	return Space{Total: 4096 * 1000, Free: 4096 * 250}, nil
}

func (k *fakeKernel) set(f func(k *fakeKernel)) {
	k.mu.Lock()
	f(k)
	k.mu.Unlock()
}

func (k *fakeKernel) mountCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.mounts)
}

// waitStatus polls m until ok accepts its status.
func waitStatus(t *testing.T, m *Mounter, what string, ok func(api.MountStatus) bool) api.MountStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := m.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: status %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestMounterLifecycle walks a node through the life of the head: not
// known yet, known but not serving, serving, gone silent (a statfs that
// hangs), back again, and moved to another address.
func TestMounterLifecycle(t *testing.T) {
	k := &fakeKernel{}
	var (
		mu   sync.Mutex
		head = netip.Addr{}
	)
	setHead := func(a string) {
		mu.Lock()
		head = netip.MustParseAddr(a)
		mu.Unlock()
	}
	var events []string
	var evMu sync.Mutex
	m := &Mounter{
		Target: "/cluster",
		Resolve: func() (Source, error) {
			mu.Lock()
			defer mu.Unlock()
			if !head.IsValid() {
				return Source{}, ErrNoServer
			}
			return Source{Kind: Kind9P, Host: head, Port: DefaultPort}, nil
		},
		OnMount: func(s Source) {
			evMu.Lock()
			events = append(events, s.String())
			evMu.Unlock()
		},
		Logger:   slog.New(slog.DiscardHandler),
		Interval: 10 * time.Millisecond,
		Timeout:  50 * time.Millisecond,
		Backoff:  5 * time.Millisecond,
		Mount:    k.mount, Unmount: k.unmount, Probe: k.probe,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()

	st := waitStatus(t, m, "no server error", func(s api.MountStatus) bool { return errors.Is(errors.New(s.Error), ErrNoServer) || s.Error != "" })
	if st.Mounted {
		t.Fatalf("mounted with no server known: %+v", st)
	}
	setHead("10.77.0.1") // known, not serving: mount is refused, retried
	waitStatus(t, m, "connection refused", func(s api.MountStatus) bool { return !s.Mounted && s.Error != "" && s.Error != ErrNoServer.Error() })
	k.set(func(k *fakeKernel) { k.server = true })
	st = waitStatus(t, m, "healthy mount", func(s api.MountStatus) bool { return s.Healthy && s.Free > 0 })
	if st.Source != "9p://10.77.0.1:5640" || st.Total != 4096*1000 || st.Free != 4096*250 || st.Target != "/cluster" {
		t.Errorf("status = %+v, want 9p://10.77.0.1:5640 with 4096000 total, 1024000 free", st)
	}

	// The head freezes: statfs hangs. The mount is declared dead after
	// Timeout and detached; once the head answers again it is remounted.
	hang := make(chan struct{})
	k.set(func(k *fakeKernel) { k.hang = hang; k.server = false })
	waitStatus(t, m, "dead mount", func(s api.MountStatus) bool { return !s.Mounted })
	k.set(func(k *fakeKernel) { k.hang = nil; k.server = true })
	close(hang)
	waitStatus(t, m, "remounted", func(s api.MountStatus) bool { return s.Healthy && s.Mounted })
	if n := k.mountCount(); n != 2 {
		t.Errorf("mounted %d times, want 2 (first mount, after the head came back)", n)
	}

	// Someone unmounts /cluster by hand: it is mounted again.
	k.set(func(k *fakeKernel) { k.mounted = "" })
	deadline := time.Now().Add(5 * time.Second)
	for k.mountCount() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := k.mountCount(); n != 3 {
		t.Errorf("after an unmount by hand: mounted %d times, want 3", n)
	}

	// The head moves: the new address is mounted.
	setHead("10.77.0.9")
	waitStatus(t, m, "moved", func(s api.MountStatus) bool { return s.Healthy && s.Source == "9p://10.77.0.9:5640" })

	evMu.Lock()
	defer evMu.Unlock()
	if len(events) != 4 || events[3] != "9p://10.77.0.9:5640" {
		t.Errorf("OnMount calls = %q, want 4 ending with the new address", events)
	}
}

// TestGuardMountPoint: a write to a guarded, unmounted mount point fails
// instead of landing where the next mount would hide it.
func TestGuardMountPoint(t *testing.T) {
	target := filepath.Join(t.TempDir(), "cluster")
	if err := GuardMountPoint(target); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("GuardMountPoint needs to mount: %v", err)
		}
		t.Fatalf("GuardMountPoint(%s) = %v", target, err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH) })
	err := os.WriteFile(filepath.Join(target, "x"), []byte("lost?"), 0o644)
	if !errors.Is(err, unix.EROFS) {
		t.Errorf("write under the guarded %s: %v, want EROFS", target, err)
	}
	// A second guard is not stacked on the first.
	if err := GuardMountPoint(target); err != nil {
		t.Fatalf("GuardMountPoint again: %v", err)
	}
	unix.Unmount(target, unix.MNT_DETACH)
	if err := os.WriteFile(filepath.Join(target, "x"), []byte("x"), 0o644); err != nil {
		t.Errorf("write under %s with the guard gone: %v (guard stacked twice?)", target, err)
	}
}

// TestMountLocal: the head's own export is bound at the mount point, over
// its guard: a file written through the mount lands in the export.
func TestMountLocal(t *testing.T) {
	export, target := t.TempDir(), filepath.Join(t.TempDir(), "cluster")
	if err := GuardMountPoint(target); err != nil {
		if errors.Is(err, unix.EPERM) {
			t.Skipf("mounting needs root: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(target, unix.MNT_DETACH); unix.Unmount(target, unix.MNT_DETACH) })
	src := Source{Kind: KindLocal, Dir: export}
	if got := src.String(); got != export {
		t.Errorf("String() = %q, want the directory %q", got, export)
	}
	if err := MountSource(src, target); err != nil {
		t.Fatalf("MountSource(%v) = %v", src, err)
	}
	if err := os.WriteFile(filepath.Join(target, "x"), []byte("through the bind"), 0o644); err != nil {
		t.Fatalf("write through the bound export: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(export, "x")); err != nil || string(b) != "through the bind" {
		t.Errorf("the export holds %q (%v), want what was written through %s", b, err, target)
	}
}
