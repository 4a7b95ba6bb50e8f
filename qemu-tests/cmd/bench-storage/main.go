// Command bench-storage prints the sequential write and read throughput
// of the shared storage (/cluster, the head's 9P export) between two VMs,
// beside raw TCP throughput over the same virtual link in the same run,
// and their ratio. make bench-storage runs it.
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
	size := flag.Int("size", 64, "MiB moved per transfer")
	runs := flag.Int("runs", 3, "transfers of each kind")
	timeout := flag.Duration("timeout", 20*time.Minute, "limit for the whole run")
	verbose := flag.Bool("v", false, "log QEMU command lines")
	flag.Parse()
	bench.Main("bench-storage", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		return bench.Storage(ctx, bench.StorageConfig{
			ImageDir: *image,
			SizeMB:   *size,
			Runs:     *runs,
			Timeout:  *timeout,
			Logger:   log,
		})
	})
}
