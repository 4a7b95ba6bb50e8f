// Command bench-netboot prints how long a diskless drift worker takes
// from power-on to its ready line when it boots from a head over the
// network, alone and three at once, beside the same image booted from
// kernel+initramfs by QEMU (the floor), and the bytes the head served per
// protocol. make bench-netboot runs it.
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
	runs := flag.Int("runs", 3, "boots of the floor and of one PXE worker (three at once boot once)")
	timeout := flag.Duration("timeout", 15*time.Minute, "limit per lab")
	verbose := flag.Bool("v", false, "log QEMU command lines")
	flag.Parse()
	bench.Main("bench-netboot", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		return bench.RunNetboot(ctx, bench.NetbootConfig{ImageDir: *image, Runs: *runs, Timeout: *timeout, Logger: log})
	})
}
