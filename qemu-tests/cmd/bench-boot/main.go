// Command bench-boot prints how long drift takes from QEMU start to its
// ready line (kernel+initramfs boot, median of 3), the same for a floor
// initramfs that only prints a line, their ratio, and the image sizes.
// make bench-boot runs it.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/driftcluster/drift/qemu-tests/bench"
)

func main() {
	image := flag.String("image", "out", "image directory written by drift-image")
	runs := flag.Int("runs", 3, "boots of each kind")
	timeout := flag.Duration("timeout", 5*time.Minute, "limit per boot")
	verbose := flag.Bool("v", false, "log QEMU command lines")
	flag.Parse()
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelInfo
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, bench.Config{
		ImageDir: *image,
		Runs:     *runs,
		Timeout:  *timeout,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench-boot:", err)
		os.Exit(1)
	}
	res.Print(os.Stdout)
}
