package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Main is the body of the bench commands' mains, after they parse their
// flags: it runs run until it returns or the user interrupts, with a
// logger on stderr (QEMU command lines with verbose), prints what it
// measured to stdout, or the error to stderr with exit status 1.
func Main(name string, verbose bool, run func(context.Context, *slog.Logger) (interface{ Print(io.Writer) }, error)) {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelInfo
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	res, err := run(ctx, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})))
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	res.Print(os.Stdout)
}

// prepare loads the image in dir and returns it with logger (nil: one
// that discards).
func prepare(dir string, logger *slog.Logger) (lab.Image, *slog.Logger, error) {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	img, err := lab.LoadImage(dir)
	return img, logger, err
}

// formed waits until the lab's n nodes are ready and each lists all n
// alive, and returns their names, node 1's first.
func formed(ctx context.Context, l *lab.Lab, n int) ([]string, error) {
	if err := l.WaitReady(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var names []string
	var nodes []int
	for i := 1; i <= n; i++ {
		r, _ := l.Ready(i)
		names, nodes = append(names, r.Name), append(nodes, i)
	}
	if _, err := l.WaitMembers(ctx, nodes, lab.AllAlive(names...)); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	return names, nil
}
