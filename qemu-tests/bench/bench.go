// Package bench measures how long drift takes to boot in QEMU, beside a
// floor: the same kernel with an initramfs whose init only prints a line.
// make bench-boot runs it through qemu-tests/cmd/bench-boot.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"time"

	"github.com/driftcluster/drift/qemu-tests/floor"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Config says what to measure.
type Config struct {
	ImageDir string        // drift-image output (image.json); required
	Runs     int           // boots of each kind; 0: 3
	Timeout  time.Duration // per boot; 0: 5 minutes
	Accel    lab.Accel     // "": lab.ResolveAccel, cached in the user cache directory
	Logger   *slog.Logger  // nil: discard (the QEMU command lines go to each run's state dir)
}

// Result is what one invocation measured.
type Result struct {
	Accel         lab.Accel
	Drift, Floor  []time.Duration // QEMU start to the ready line / the floor's line, per run
	ISOSize       int64
	InitramfsSize int64
}

// Run boots the image's kernel with drift's initramfs and with the floor
// initramfs, Runs times each, one VM at a time, and returns the times.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &Result{}
	if res.ISOSize, err = fileSize(img.ISO); err != nil {
		return nil, err
	}
	if res.InitramfsSize, err = fileSize(img.Initramfs); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "dbench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)

	if res.Accel, err = resolveAccel(ctx, cfg.Accel, img, log); err != nil {
		return nil, err
	}

	floorImg := img
	floorImg.Initramfs = filepath.Join(work, "floor.cpio")
	if err := floor.WriteInitramfs(ctx, floorImg.Initramfs); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	floorRE := regexp.MustCompile(regexp.QuoteMeta(floor.Line))
	for i := range cfg.Runs {
		d, err := bootOnce(ctx, cfg, log, img, filepath.Join(work, fmt.Sprintf("d%d", i)), res.Accel, lab.ReadyRE)
		if err != nil {
			return nil, fmt.Errorf("bench: drift boot %d: %w", i+1, err)
		}
		res.Drift = append(res.Drift, d)
		d, err = bootOnce(ctx, cfg, log, floorImg, filepath.Join(work, fmt.Sprintf("f%d", i)), res.Accel, floorRE)
		if err != nil {
			return nil, fmt.Errorf("bench: floor boot %d: %w", i+1, err)
		}
		res.Floor = append(res.Floor, d)
	}
	return res, nil
}

// resolveAccel returns accel, or when it is "" the accelerator
// lab.ResolveAccel picks, its probe cached in the user cache directory.
func resolveAccel(ctx context.Context, accel lab.Accel, img lab.Image, log *slog.Logger) (lab.Accel, error) {
	if accel != "" {
		return accel, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	cache = filepath.Join(cache, "drift-lab")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	a, err := lab.ResolveAccel(ctx, lab.ProbeConfig{CacheDir: cache, Kernel: img.Kernel, Logger: log})
	if err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return a, nil
}

// bootOnce starts one kernel-boot node and returns the time from its QEMU
// start to the first console line matching re.
func bootOnce(ctx context.Context, cfg Config, log *slog.Logger, img lab.Image, dir string, accel lab.Accel, re *regexp.Regexp) (time.Duration, error) {
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: dir, Nodes: 1, Boot: lab.BootKernel, Accel: accel, Logger: log})
	if err != nil {
		return 0, err
	}
	defer l.Down(context.WithoutCancel(ctx))
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if _, err := l.WaitFor(wctx, 1, re); err != nil {
		return 0, err
	}
	return time.Since(l.StartedAt(1)), nil
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return fi.Size(), nil
}

// Median returns the median of ds (the mean of the middle two for an even count).
func Median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// Print writes the figures of r.
func (r *Result) Print(w io.Writer) {
	secs := func(ds []time.Duration) string {
		out := ""
		for _, d := range ds {
			out += fmt.Sprintf(" %.2f", d.Seconds())
		}
		return out
	}
	dm, fm := Median(r.Drift), Median(r.Floor)
	fmt.Fprintf(w, "boot to ready, kernel+initramfs, accel %s, median of %d:\n", r.Accel, len(r.Drift))
	fmt.Fprintf(w, "  drift  %6.2f s   (runs:%s)\n", dm.Seconds(), secs(r.Drift))
	fmt.Fprintf(w, "  floor  %6.2f s   (runs:%s; same kernel, init that only prints a line)\n", fm.Seconds(), secs(r.Floor))
	if fm > 0 {
		fmt.Fprintf(w, "  ratio  %6.2f x   drift / floor\n", dm.Seconds()/fm.Seconds())
	}
	fmt.Fprintf(w, "sizes:\n")
	fmt.Fprintf(w, "  iso        %6.1f MiB (%d bytes)\n", float64(r.ISOSize)/(1<<20), r.ISOSize)
	fmt.Fprintf(w, "  initramfs  %6.1f MiB (%d bytes)\n", float64(r.InitramfsSize)/(1<<20), r.InitramfsSize)
}
