package qemutests

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/floor"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// TestNodeThatNeverReady boots the image's kernel with the floor initramfs,
// whose init prints one line and powers off: waiting for the ready line must
// fail as soon as QEMU exits, not at the timeout, with the node's console in
// the error.
func TestNodeThatNeverReady(t *testing.T) {
	img := image(t)
	t.Parallel()
	img.Initramfs = filepath.Join(t.TempDir(), "floor.cpio")
	if err := floor.WriteInitramfs(t.Context(), img.Initramfs); err != nil {
		t.Fatal(err)
	}
	l := startLab(t, lab.Config{Image: img, Nodes: 1, Boot: lab.BootKernel})
	ctx := waitContext(t, 5*time.Minute)
	start := time.Now()
	_, err := l.WaitReadyNode(ctx, 1)
	var we *lab.WaitError
	if !errors.As(err, &we) || !errors.Is(err, lab.ErrExited) {
		t.Fatalf("WaitReadyNode(node that powers off) = %v, want a WaitError wrapping ErrExited", err)
	}
	if ctx.Err() != nil {
		t.Errorf("WaitReadyNode returned only at the timeout (%s), want as soon as QEMU exited", time.Since(start))
	}
	t.Logf("the error as a user sees it:\n%v", err)
	for _, want := range []string{"node 1", "console lines of node 1", floor.Line, "reproduce by hand"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if l.Running(1) {
		t.Errorf("node 1 still running after its guest powered off")
	}
}
