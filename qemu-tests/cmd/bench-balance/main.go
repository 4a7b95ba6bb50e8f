// Command bench-balance runs the same batch of equal CPU-bound jobs from
// one node of a 3-node lab (each VM held to the same CPU share) with
// balancing off once and on three times, beside the ideal (total work
// over total capacity), and prints the balancing simulator's figures for
// the same scenario and at 1000 nodes. make bench-balance runs it.
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
	jobs := flag.Int("jobs", 9, "equal CPU-bound jobs started on one node")
	share := flag.Float64("share", 0.6, "share of a host core each VM is held to")
	jobTime := flag.Duration("job-time", 30*time.Second, "run time of one job alone, calibrated")
	runs := flag.Int("runs", 3, "runs with balancing on")
	verbose := flag.Bool("v", false, "log QEMU command lines")
	flag.Parse()
	bench.Main("bench-balance", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		return bench.Balance(ctx, bench.BalanceConfig{ImageDir: *image, Jobs: *jobs, Share: *share, JobTime: *jobTime, Runs: *runs, Logger: log})
	})
}
