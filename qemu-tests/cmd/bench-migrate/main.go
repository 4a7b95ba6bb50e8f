// Command bench-migrate boots two nodes and prints, for drift-workload
// touch jobs of 64 MB and 256 MB resident dirtying 1 MB/s, drift's
// migration freeze and total time beside a stop-and-copy baseline done
// by hand in the same run (criu dump, tar over netcat, criu restore) and
// the floor of the images' size over the link's measured rate, with
// drift's freeze as a fraction of stop-and-copy's. make bench-migrate
// runs it.
package main

import (
	"context"
	"flag"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/driftcluster/drift/qemu-tests/bench"
)

func main() {
	image := flag.String("image", "out", "image directory written by drift-image")
	sizes := flag.String("sizes", "64M,256M", "comma-separated resident sizes of the jobs")
	dirty := flag.String("dirty", "1M", "bytes each job dirties per second")
	mem := flag.Int("mem", 1536, "memory per VM in MB")
	timeout := flag.Duration("timeout", 30*time.Minute, "limit for the whole run")
	verbose := flag.Bool("v", false, "log QEMU command lines and each step")
	flag.Parse()
	bench.Main("bench-migrate", *verbose, func(ctx context.Context, log *slog.Logger) (interface{ Print(io.Writer) }, error) {
		return bench.Migrate(ctx, bench.MigrateConfig{
			ImageDir: *image,
			Sizes:    strings.Split(*sizes, ","),
			Dirty:    *dirty,
			MemoryMB: *mem,
			Timeout:  *timeout,
			Logger:   log,
		})
	})
}
