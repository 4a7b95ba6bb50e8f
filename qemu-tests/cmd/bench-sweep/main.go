// Command bench-sweep runs an array of equal CPU-bound tasks (drift run
// --array) from one worker of a 3-node lab, each VM held to the same CPU
// share, beside the ideal (total work over total capacity) and beside the
// same tasks started by a loop of drift run -d, three times each; then
// prints the simulator's sweep of 100,000 heavy-tailed tasks over 1000
// nodes, with and without migration. make bench-sweep runs it.
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
	tasks := flag.Int("tasks", 15, "equal CPU-bound tasks in the array")
	share := flag.Float64("share", 0.6, "share of a host core each VM is held to")
	taskTime := flag.Duration("task-time", 10*time.Second, "run time of one task alone, calibrated")
	runs := flag.Int("runs", 3, "runs of each way (array, loop)")
	verbose := flag.Bool("v", false, "log QEMU command lines and each run")
	flag.Parse()
	bench.Main("bench-sweep", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		return bench.Sweep(ctx, bench.SweepConfig{ImageDir: *image, Tasks: *tasks, Share: *share, TaskTime: *taskTime, Runs: *runs, Logger: log})
	})
}
