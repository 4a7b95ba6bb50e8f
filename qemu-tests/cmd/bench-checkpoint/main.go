// Command bench-checkpoint boots a 3-node lab and prints what checkpoints
// cost a job (a CPU-bound one, and one of 64 MB dirtying 1 MB/s) at the
// default interval, beside the same job with checkpoints off, and the time
// from a node's power-off to its job's output resuming elsewhere, split
// into detection, restore and catch-up. make bench-checkpoint runs it.
package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"time"

	"github.com/driftcluster/drift/qemu-tests/bench"
)

func main() {
	image := flag.String("image", "out", "image directory written by drift-image")
	runs := flag.Int("runs", 3, "runs of each kind")
	work := flag.Duration("work", 45*time.Second, "how long the CPU-bound job runs with checkpoints off, about")
	taken := flag.Int("taken", 2, "checkpoints the 64 MB job runs long enough to take at the default interval (measured in a run of its own first)")
	share := flag.Float64("share", 0.6, "share of a host core each VM is held to (negative: not held)")
	timeout := flag.Duration("timeout", 90*time.Minute, "limit for the whole run")
	verbose := flag.Bool("v", false, "log QEMU command lines and each step")
	flag.Parse()
	bench.Main("bench-checkpoint", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		return bench.Checkpoint(ctx, bench.CheckpointConfig{ImageDir: *image, Runs: *runs, Work: *work, Taken: *taken, Share: *share, Timeout: *timeout, Logger: log})
	})
}
