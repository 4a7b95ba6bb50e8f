package qemutests

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// maxVMs is how many VMs run at once: one per core on the 2-core machines
// these tests run on, or TCG guests starve each other into timeouts.
const maxVMs = 2

// vmSlots bounds the VMs running at once across parallel tests.
var vmSlots = semaphore.NewWeighted(maxVMs)

// acquireVMs takes slots for n VMs (a lab bigger than maxVMs takes them
// all) and gives them back when the test ends.
func acquireVMs(t *testing.T, n int) {
	t.Helper()
	w := int64(min(n, maxVMs))
	if err := vmSlots.Acquire(t.Context(), w); err != nil {
		t.Fatalf("wait for a VM slot: %v", err)
	}
	t.Cleanup(func() { vmSlots.Release(w) })
}

// image returns the image under test, skipping unless DRIFT_QEMU_TESTS=1
// and failing when the image has not been built. The tests boot a snapshot
// copy, taken once, so that a rebuild of out/ while they run cannot mix two
// images.
func image(t *testing.T) lab.Image {
	t.Helper()
	if os.Getenv("DRIFT_QEMU_TESTS") != "1" {
		t.Skip("QEMU scenario tests boot real VMs: run them with `make test` (or DRIFT_QEMU_TESTS=1 go test ./qemu-tests/...)")
	}
	dir := os.Getenv("DRIFT_IMAGE_DIR")
	if dir == "" {
		dir = filepath.Join("..", "out")
	}
	snapOnce.Do(func() { snapImg, snapErr = snapshotImage(dir) })
	if snapErr != nil {
		t.Fatalf("no image to boot in %s: run make image (%v)", dir, snapErr)
	}
	return snapImg
}

var (
	snapOnce sync.Once
	snapImg  lab.Image
	snapErr  error
	snapDir  string // removed by TestMain
)

// snapshotImage copies the image in dir to a temporary directory.
func snapshotImage(dir string) (lab.Image, error) {
	img, err := lab.LoadImage(dir)
	if err != nil {
		return lab.Image{}, err
	}
	snapDir, err = os.MkdirTemp("", "dimg-")
	if err != nil {
		return lab.Image{}, err
	}
	for _, p := range []*string{&img.Kernel, &img.Initramfs, &img.KeyInitramfs, &img.ISO} {
		if *p == "" {
			continue
		}
		dst := filepath.Join(snapDir, filepath.Base(*p))
		if err := copyFile(dst, *p); err != nil {
			return lab.Image{}, err
		}
		*p = dst
	}
	return img, nil
}

func copyFile(dst, src string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

func TestMain(m *testing.M) {
	code := m.Run()
	if snapDir != "" {
		os.RemoveAll(snapDir)
	}
	if driftBin != "" {
		os.RemoveAll(filepath.Dir(driftBin))
	}
	os.Exit(code)
}

var (
	accelOnce sync.Once
	accel     lab.Accel
	accelErr  error
)

// testAccel probes KVM once per machine (cached in the user cache
// directory), not once per test.
func testAccel(t *testing.T, img lab.Image) lab.Accel {
	t.Helper()
	accelOnce.Do(func() {
		cache, err := os.UserCacheDir()
		if err != nil {
			cache = os.TempDir()
		}
		cache = filepath.Join(cache, "drift-lab")
		if err := os.MkdirAll(cache, 0o755); err != nil {
			accelErr = err
			return
		}
		accel, accelErr = lab.ResolveAccel(context.Background(), lab.ProbeConfig{CacheDir: cache, Kernel: img.Kernel, Logger: testLogger(t)})
	})
	if accelErr != nil {
		t.Fatalf("choose accelerator: %v", accelErr)
	}
	return accel
}

// startLab starts a lab for the test and stops it when the test ends, even
// when it fails or times out. Logs are kept (and their place logged) when
// the test fails.
func startLab(t *testing.T, cfg lab.Config) *lab.Lab {
	t.Helper()
	acquireVMs(t, max(cfg.Nodes, 1))
	// A short directory: unix socket paths are limited to 107 bytes.
	dir, err := os.MkdirTemp("", "dlab-")
	if err != nil {
		t.Fatal(err)
	}
	cfg.StateDir = dir
	if cfg.Accel == "" {
		cfg.Accel = testAccel(t, cfg.Image)
	}
	cfg.Logger = testLogger(t)
	cfg.DieWithParent = true
	l, err := lab.Start(t.Context(), cfg)
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("start lab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(context.Background()); err != nil {
			t.Errorf("stop lab: %v", err)
		}
		if t.Failed() {
			t.Logf("lab state and console logs kept in %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	return l
}

// waitContext bounds a wait by d and by the test binary's -timeout, less a
// margin, so that a slow boot fails the test (and its cleanup runs) before
// the binary is killed.
func waitContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	deadline := time.Now().Add(d)
	if td, ok := t.Deadline(); ok && td.Add(-30*time.Second).Before(deadline) {
		deadline = td.Add(-30 * time.Second)
	}
	ctx, cancel := context.WithDeadline(t.Context(), deadline)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs to the test's log.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// checkReady checks what a node's ready line says against what the lab
// knows about the node.
func checkReady(t *testing.T, l *lab.Lab, img lab.Image, r lab.Ready, wantRole string) {
	t.Helper()
	if want := lab.NodeHostname(l.MAC(r.Node)); r.Name != want {
		t.Errorf("node %d ready as %q, want %q (from its MAC %s)", r.Node, r.Name, want, l.MAC(r.Node))
	}
	if r.Version != img.Version {
		t.Errorf("node %d version = %q, want the image's %q", r.Node, r.Version, img.Version)
	}
	if wantRole != "" && r.Role != wantRole {
		t.Errorf("node %d role = %q, want %q", r.Node, r.Role, wantRole)
	}
	if r.Addr == "" {
		t.Errorf("node %d ready line has no addr: %q", r.Node, r.Line)
	}
}
