// Command bench-boot prints how long drift takes from QEMU start to its
// ready line (kernel+initramfs boot, median and spread of 3), the same for
// a floor initramfs that only prints a line, their ratio, the time of each
// boot phase the agent logs, and the image sizes. By default each drift
// boot is a worker joining a head that is up (-role head: a head alone).
// make bench-boot runs it.
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
	runs := flag.Int("runs", 3, "boots of each kind")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit per boot")
	verbose := flag.Bool("v", false, "log QEMU command lines")
	role := flag.String("role", "worker", "what each drift boot is: worker (joining a head that is up) or head (alone)")
	keep := flag.String("keep", "", "directory to keep the drift boots' console logs in")
	flag.Parse()
	bench.Main("bench-boot", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		res, err := bench.Run(ctx, bench.Config{
			ImageDir: *image,
			Runs:     *runs,
			Timeout:  *timeout,
			Logger:   log,
			Role:     *role,
			KeepDir:  *keep,
		})
		return res, err
	})
}
