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
	"strconv"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/boot"
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
	// Role is what each measured drift boot is: "worker" (""), a worker
	// joining a head that is up already, as most boots of a pool are; or
	// "head", a head booting alone.
	Role    string
	KeepDir string // "": none; else the drift boots' console logs are kept there
}

// Result is what one invocation measured.
type Result struct {
	Role         string // worker or head (Config.Role)
	Accel        lab.Accel
	Drift, Floor []time.Duration // QEMU start to the ready line / the floor's line, per run
	// Phases are, per drift run, the time since kernel start of each boot
	// phase the agent logged (boot.Phases), and under "kernel" the time
	// from QEMU start to the kernel's clock starting (ready's wall time
	// less its uptime: firmware, and QEMU loading kernel and initramfs).
	Phases        []map[string]time.Duration
	FloorPhases   []map[string]time.Duration // the same for the floor: the kernel's phases only
	ISOSize       int64
	InitramfsSize int64
}

// Run boots the image's kernel with drift's initramfs and with the floor
// initramfs, Runs times each, one VM at a time, and returns the times.
// With Role "worker" a head boots first and stays up: each drift boot is
// a worker joining it (it gets its address from the head's DHCP server),
// and the floor boots beside the same head, so both pay for it alike.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.Role == "" {
		cfg.Role = "worker"
	}
	if cfg.Role != "worker" && cfg.Role != "head" {
		return nil, fmt.Errorf("bench: role %q: want worker or head", cfg.Role)
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &Result{Role: cfg.Role}
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
	var head *lab.Lab
	if cfg.Role == "worker" {
		head, err = lab.Start(ctx, lab.Config{Image: img, StateDir: filepath.Join(work, "h"), Nodes: 1, Boot: lab.BootKernel, Accel: res.Accel, Logger: log, DieWithParent: true})
		if err != nil {
			return nil, fmt.Errorf("bench: head: %w", err)
		}
		defer head.Down(context.WithoutCancel(ctx))
		wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
		_, err = head.WaitReadyNode(wctx, 1)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("bench: head: %w", err)
		}
	}
	floorRE := regexp.MustCompile(regexp.QuoteMeta(floor.Line))
	for i := range cfg.Runs {
		var (
			d  time.Duration
			ph map[string]time.Duration
		)
		if head != nil {
			d, ph, err = workerOnce(ctx, cfg, head, i)
		} else {
			d, ph, err = bootOnce(ctx, cfg, log, img, filepath.Join(work, fmt.Sprintf("d%d", i)), res.Accel, lab.ReadyRE)
		}
		if err != nil {
			return nil, fmt.Errorf("bench: drift boot %d: %w", i+1, err)
		}
		res.Drift = append(res.Drift, d)
		res.Phases = append(res.Phases, ph)
		d, ph, err = bootOnce(ctx, cfg, log, floorImg, filepath.Join(work, fmt.Sprintf("f%d", i)), res.Accel, floorRE)
		if err != nil {
			return nil, fmt.Errorf("bench: floor boot %d: %w", i+1, err)
		}
		res.Floor = append(res.Floor, d)
		res.FloorPhases = append(res.FloorPhases, ph)
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

// phasesAfterReady bounds how long a drift boot is watched after its
// ready line for the phases that may come later (storage, all-modules).
const phasesAfterReady = 30 * time.Second

// bootOnce starts one kernel-boot node and returns the time from its QEMU
// start to the first console line matching re. For a drift boot (re is
// lab.ReadyRE) it also returns the boot phases the agent logged.
func bootOnce(ctx context.Context, cfg Config, log *slog.Logger, img lab.Image, dir string, accel lab.Accel, re *regexp.Regexp) (time.Duration, map[string]time.Duration, error) {
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: dir, Nodes: 1, Boot: lab.BootKernel, Accel: accel, Logger: log, DieWithParent: true})
	if err != nil {
		return 0, nil, err
	}
	defer l.Down(context.WithoutCancel(ctx))
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if _, err := l.WaitFor(wctx, 1, re); err != nil {
		return 0, nil, err
	}
	took := time.Since(l.StartedAt(1))
	if re != lab.ReadyRE {
		// The floor: the kernel's phases, its clock's start from its /init.
		b, err := os.ReadFile(l.ConsoleLog(1))
		if err != nil {
			return 0, nil, fmt.Errorf("bench: %w", err)
		}
		ph := parsePhases(string(b))
		if u, ok := ph[phaseUserspace]; ok {
			ph[phaseKernel] = took - u
		}
		return took, ph, nil
	}
	ph, err := phasesOf(wctx, cfg, l, 1, took, filepath.Base(dir))
	return took, ph, err
}

// workerOnce boots one more worker beside the head of l and returns the
// time from its QEMU start to its ready line, and its boot phases; the
// worker is stopped again.
func workerOnce(ctx context.Context, cfg Config, l *lab.Lab, run int) (time.Duration, map[string]time.Duration, error) {
	n, err := l.Add(ctx, nil)
	if err != nil {
		return 0, nil, err
	}
	defer l.StopNode(context.WithoutCancel(ctx), n)
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if _, err := l.WaitReadyNode(wctx, n); err != nil {
		return 0, nil, err
	}
	took := time.Since(l.StartedAt(n))
	ph, err := phasesOf(wctx, cfg, l, n, took, fmt.Sprintf("w%d", run))
	return took, ph, err
}

// phasesOf waits a while for the phases that come after ready, then
// reads node n's console for the boot phases, and keeps the console in
// cfg.KeepDir as name.console.log.
func phasesOf(ctx context.Context, cfg Config, l *lab.Lab, n int, took time.Duration, name string) (map[string]time.Duration, error) {
	// Each may not come (a node without storage), and an agent that
	// logs no phases logs none of these either.
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	_, err := l.WaitFor(rctx, n, regexp.MustCompile(`drift: boot phase=`+boot.PhaseReady+` `))
	rcancel()
	if err == nil {
		for _, p := range []string{boot.PhaseStorage, boot.PhaseAllModules} {
			pctx, cancel := context.WithTimeout(ctx, phasesAfterReady)
			l.WaitFor(pctx, n, regexp.MustCompile(`drift: boot phase=`+p+` `))
			cancel()
		}
	}
	b, err := os.ReadFile(l.ConsoleLog(n))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if cfg.KeepDir != "" {
		if err := os.MkdirAll(cfg.KeepDir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		if err := os.WriteFile(filepath.Join(cfg.KeepDir, name+".console.log"), b, 0o644); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	ph := parsePhases(string(b))
	if r, ok := ph[boot.PhaseReady]; ok {
		ph[phaseKernel] = took - r
	}
	return ph, nil
}

// phaseKernel names, in Result.Phases, the time before the kernel's clock.
const phaseKernel = "kernel"

// The phases read from the kernel's own console lines.
const (
	phaseUnpacked  = "unpacked"  // the kernel has unpacked the initramfs ("Freeing initrd memory")
	phaseUserspace = "userspace" // the kernel runs /init ("Run /init as init process")
)

var kernelPhaseREs = map[string]*regexp.Regexp{
	phaseUnpacked:  regexp.MustCompile(`^\[\s*([0-9]+\.[0-9]+)\] Freeing initrd memory`),
	phaseUserspace: regexp.MustCompile(`^\[\s*([0-9]+\.[0-9]+)\] Run /init as init process`),
}

// parsePhases returns the boot phases logged on a console: the agent's,
// and the kernel's unpacked and userspace.
func parsePhases(console string) map[string]time.Duration {
	ph := map[string]time.Duration{}
	for _, line := range strings.Split(console, "\n") {
		for name, re := range kernelPhaseREs {
			if m := re.FindStringSubmatch(line); m != nil {
				if s, err := strconv.ParseFloat(m[1], 64); err == nil {
					ph[name] = time.Duration(s * float64(time.Second))
				}
			}
		}
		if name, at, ok := boot.ParsePhase(line); ok {
			if _, seen := ph[name]; !seen {
				ph[name] = at
			}
		}
	}
	return ph
}

func fileSize(p string) (int64, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	return fi.Size(), nil
}

// Spread returns the largest of ds less the smallest.
func Spread(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return slices.Max(ds) - slices.Min(ds)
}

// printPhases writes the drift boots' phases: median and spread over the
// runs, from QEMU start (the kernel's start plus its phase time), beside
// the floor.
func (r *Result) printPhases(w io.Writer) {
	if !slices.ContainsFunc(r.Phases, func(ph map[string]time.Duration) bool { return len(ph) > 0 }) {
		fmt.Fprintf(w, "drift boot phases: none logged (an image from before the agent logged them)\n")
		return
	}
	fmt.Fprintf(w, "drift boot phases, seconds from QEMU start (median, spread over %d runs; floor %.2f s):\n", len(r.Phases), Median(r.Floor).Seconds())
	fmt.Fprintf(w, "  %-12s %7s %7s  %7s  %s\n", "phase", "median", "spread", "x floor", "the floor's")
	rows := append([]string{phaseKernel, phaseUnpacked, phaseUserspace}, boot.Phases...)
	for _, name := range rows {
		ds := phaseTimes(r.Phases, name)
		if len(ds) == 0 {
			fmt.Fprintf(w, "  %-12s %7s %7s\n", name, "-", "-")
			continue
		}
		fl := ""
		if fds := phaseTimes(r.FloorPhases, name); len(fds) > 0 {
			fl = fmt.Sprintf("%7.2f", Median(fds).Seconds())
		}
		note := ""
		if len(ds) < len(r.Phases) {
			note = fmt.Sprintf("  (in %d of %d runs)", len(ds), len(r.Phases))
		}
		fmt.Fprintf(w, "  %-12s %7.2f %7.2f  %7.2f  %7s%s\n", name, Median(ds).Seconds(), Spread(ds).Seconds(), ratio(Median(ds), Median(r.Floor)), fl, note)
	}
}

// phaseTimes returns, for each run that has phase name and the kernel's
// start, the phase's time from QEMU start.
func phaseTimes(runs []map[string]time.Duration, name string) []time.Duration {
	var ds []time.Duration
	for _, ph := range runs {
		k, okK := ph[phaseKernel]
		at, ok := ph[name]
		if !ok || !okK {
			continue
		}
		if name != phaseKernel {
			at += k
		}
		ds = append(ds, at)
	}
	return ds
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
	if r.Role == "worker" {
		fmt.Fprintf(w, "  (each drift boot is a worker joining a head that is up; the floor boots beside the same head)\n")
	} else {
		fmt.Fprintf(w, "  (each drift boot is a head alone)\n")
	}
	fmt.Fprintf(w, "  drift  %6.2f s   spread %.2f s (runs:%s)\n", dm.Seconds(), Spread(r.Drift).Seconds(), secs(r.Drift))
	fmt.Fprintf(w, "  floor  %6.2f s   spread %.2f s (runs:%s; same kernel, init that only prints a line)\n", fm.Seconds(), Spread(r.Floor).Seconds(), secs(r.Floor))
	if fm > 0 {
		fmt.Fprintf(w, "  ratio  %6.2f x   drift / floor (goal: at most 1.5)\n", dm.Seconds()/fm.Seconds())
	}
	r.printPhases(w)
	fmt.Fprintf(w, "sizes:\n")
	fmt.Fprintf(w, "  iso        %6.1f MiB (%d bytes)\n", float64(r.ISOSize)/(1<<20), r.ISOSize)
	fmt.Fprintf(w, "  initramfs  %6.1f MiB (%d bytes)\n", float64(r.InitramfsSize)/(1<<20), r.InitramfsSize)
}
