package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// StorageConfig says what bench-storage measures.
type StorageConfig struct {
	ImageDir string        // drift-image output (image.json); required
	SizeMB   int           // bytes moved per transfer, in MiB; 0: 64
	Runs     int           // transfers of each kind; 0: 3
	Timeout  time.Duration // for the whole run; 0: 20 minutes
	Accel    lab.Accel     // "": lab.ResolveAccel, cached in the user cache directory
	Logger   *slog.Logger  // nil: discard
}

// StorageResult is what one bench-storage measured, per run.
type StorageResult struct {
	Accel   lab.Accel
	SizeMB  int
	TCPUp   []time.Duration // raw TCP, worker to head (netcat)
	Write   []time.Duration // the worker writes a file to /cluster
	TCPDown []time.Duration // raw TCP, head to worker
	Read    []time.Duration // the worker reads it back from /cluster
}

const benchPort = "5999"

var benchMountedRE = regexp.MustCompile(`drift: storage mounted=/cluster from=`)

// Storage boots a head and a worker and moves SizeMB between them, Runs
// times each way: raw TCP with netcat, and a file written to and read
// from /cluster with dd. Each figure is the time of the guest command as
// the host sees it (labport round trip included, the same for all).
func Storage(ctx context.Context, cfg StorageConfig) (*StorageResult, error) {
	if cfg.SizeMB == 0 {
		cfg.SizeMB = 64
	}
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 20 * time.Minute
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &StorageResult{SizeMB: cfg.SizeMB}
	if res.Accel, err = resolveAccel(ctx, cfg.Accel, img, log); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "dstor-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: work, Nodes: 2, Accel: res.Accel, Logger: log, DieWithParent: true})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer l.Down(context.WithoutCancel(ctx))
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := l.WaitReady(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	for n := 1; n <= 2; n++ {
		if _, err := l.WaitFor(ctx, n, benchMountedRE); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	head, _ := l.Ready(1)
	worker, _ := l.Ready(2)
	size := strconv.Itoa(cfg.SizeMB)
	for n := 1; n <= 2; n++ {
		if _, err := run(ctx, l, n, "dd", "if=/dev/zero", "of=/tmp/bench.src", "bs=1M", "count="+size); err != nil {
			return nil, err
		}
	}
	for range cfg.Runs {
		d, err := tcp(ctx, l, 2, 1, head.Addr)
		if err != nil {
			return nil, err
		}
		res.TCPUp = append(res.TCPUp, d)
		if d, err = run(ctx, l, 2, "dd", "if=/tmp/bench.src", "of=/cluster/bench.dat", "bs=1M"); err != nil {
			return nil, err
		}
		res.Write = append(res.Write, d)
		if d, err = tcp(ctx, l, 1, 2, worker.Addr); err != nil {
			return nil, err
		}
		res.TCPDown = append(res.TCPDown, d)
		if d, err = run(ctx, l, 2, "dd", "if=/cluster/bench.dat", "of=/dev/null", "bs=1M"); err != nil {
			return nil, err
		}
		res.Read = append(res.Read, d)
		if _, err := run(ctx, l, 2, "rm", "/cluster/bench.dat"); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// run runs argv on node n and returns how long it took.
func run(ctx context.Context, l *lab.Lab, n int, argv ...string) (time.Duration, error) {
	start := time.Now()
	r, err := labport.Exec(ctx, l.LabSock(n), labport.Request{Argv: argv})
	d := time.Since(start)
	if err == nil && r.ExitCode != 0 {
		err = fmt.Errorf("exit %d: %s", r.ExitCode, r.Stderr)
	}
	if err != nil {
		return 0, fmt.Errorf("bench: node %d: %q: %w", n, argv, err)
	}
	return d, nil
}

// tcp sends /tmp/bench.src from node from to a netcat listening on node
// to (at addr) and returns how long the sender took.
func tcp(ctx context.Context, l *lab.Lab, from, to int, addr string) (time.Duration, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listened := make(chan error, 1)
	go func() {
		_, err := run(lctx, l, to, "gosh", "-c", "netcat -l "+benchPort+" > /dev/null")
		listened <- err
	}()
	var (
		d   time.Duration
		err error
	)
	// The listener starts asynchronously: retry while it is not there yet.
	for range 20 {
		time.Sleep(500 * time.Millisecond)
		if d, err = run(ctx, l, from, "gosh", "-c", "netcat "+addr+" "+benchPort+" < /tmp/bench.src"); err == nil {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	if lerr := <-listened; lerr != nil {
		return 0, lerr
	}
	return d, nil
}

func rate(sizeMB int, ds []time.Duration) float64 {
	m := Median(slices.Clone(ds))
	if m <= 0 {
		return 0
	}
	return float64(sizeMB) / m.Seconds()
}

// Print writes the figures: MiB/s through /cluster beside raw TCP over
// the same link, and their ratio.
func (r *StorageResult) Print(w io.Writer) {
	fmt.Fprintf(w, "bench-storage: %d MiB between two VMs (accel %s, virtio-net), median of %d\n", r.SizeMB, r.Accel, len(r.Write))
	up, wr := rate(r.SizeMB, r.TCPUp), rate(r.SizeMB, r.Write)
	down, rd := rate(r.SizeMB, r.TCPDown), rate(r.SizeMB, r.Read)
	fmt.Fprintf(w, "  raw TCP worker->head   %7.1f MiB/s\n", up)
	fmt.Fprintf(w, "  /cluster write (9p)    %7.1f MiB/s   ratio %.2f of raw TCP\n", wr, wr/up)
	fmt.Fprintf(w, "  raw TCP head->worker   %7.1f MiB/s\n", down)
	fmt.Fprintf(w, "  /cluster read (9p)     %7.1f MiB/s   ratio %.2f of raw TCP\n", rd, rd/down)
}
