// Command bench-join prints how long a 3-node lab takes from QEMU start
// until every node lists all 3 alive, then runs agent/membership's
// BenchmarkConverge (50 and 200 in-process agents on loopback) and prints
// its convergence times and gossip bytes per node per second. make
// bench-join runs it.
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
	nodes := flag.Int("nodes", 3, "lab size")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit for the lab to boot and converge")
	verbose := flag.Bool("v", false, "log QEMU command lines")
	flag.Parse()
	bench.Main("bench-join", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		res, err := bench.Join(ctx, bench.JoinConfig{
			ImageDir: *image,
			Nodes:    *nodes,
			Timeout:  *timeout,
			Logger:   log,
		})
		return res, err
	})
}
