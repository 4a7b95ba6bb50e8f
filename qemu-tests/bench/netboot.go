package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// NetbootConfig says what bench-netboot measures.
type NetbootConfig struct {
	ImageDir string        // drift-image output (image.json); required
	Runs     int           // boots of the floor and of one PXE worker; 0: 3 (three at once boot once)
	Timeout  time.Duration // per lab; 0: 15 minutes
	Accel    lab.Accel     // "": lab.ResolveAccel, cached
	Logger   *slog.Logger  // nil: discard
}

// NetbootResult is what one bench-netboot measured.
type NetbootResult struct {
	Accel lab.Accel
	Floor []time.Duration // the same image booted from kernel+initramfs, power-on to ready (a worker joining a head that is up), per run
	One   []time.Duration // one diskless worker, power-on to ready, per run
	Three []time.Duration // three diskless workers powered on at once (virtio, e1000, UEFI)
	// Floor3 are three workers booted from kernel+initramfs at once beside
	// a running head, with the NICs of Three: the floor of Three, as four
	// VMs then share the host's cores.
	Floor3 []time.Duration
	// Bytes served per protocol, from the head's drift netboot.
	OneTFTP, OneHTTP     int64
	ThreeTFTP, ThreeHTTP int64
}

// RunNetboot boots the floor (one kernel-boot worker beside a head), then a head with
// one diskless worker, then a head with three, one lab at a time.
func RunNetboot(ctx context.Context, cfg NetbootConfig) (*NetbootResult, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 15 * time.Minute
	}
	if cfg.Runs == 0 {
		cfg.Runs = 3
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &NetbootResult{}
	if res.Accel, err = resolveAccel(ctx, cfg.Accel, img, log); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "dnbench-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)

	for i := range cfg.Runs {
		// The floor: the same worker, loaded by QEMU from kernel+initramfs,
		// joining a head that is up, as the PXE worker does (alone, a
		// worker would wait for a DHCP server that is not there).
		fl, err := floorAtOnce(ctx, cfg, img, res.Accel, log, fmt.Sprintf("%s/f%d", work, i), lab.PXEWorkers(1))
		if err != nil {
			return nil, fmt.Errorf("bench: floor: %w", err)
		}
		res.Floor = append(res.Floor, fl[0])
		times, tftp, http, err := pxeRun(ctx, cfg, img, res.Accel, log, fmt.Sprintf("%s/p1-%d", work, i), lab.PXEWorkers(1))
		if err != nil {
			return nil, err
		}
		res.One, res.OneTFTP, res.OneHTTP = append(res.One, times[0]), tftp, http
	}
	if res.Floor3, err = floorAtOnce(ctx, cfg, img, res.Accel, log, work+"/f3", lab.PXEWorkers(3)); err != nil {
		return nil, err
	}
	times, tftp, http, err := pxeRun(ctx, cfg, img, res.Accel, log, work+"/p3", lab.PXEWorkers(3))
	if err != nil {
		return nil, err
	}
	res.Three, res.ThreeTFTP, res.ThreeHTTP = times, tftp, http
	return res, nil
}

// floorAtOnce boots a head, then, at once, one worker per entry of
// workers from kernel+initramfs with that entry's NIC, and returns each
// one's power-on to ready: what the same VMs take without the network
// boot, on a host whose cores they share as the PXE workers do.
func floorAtOnce(ctx context.Context, cfg NetbootConfig, img lab.Image, accel lab.Accel, log *slog.Logger, dir string, workers []lab.PXEWorker) ([]time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l, err := lab.Start(wctx, lab.Config{Image: img, StateDir: dir, Nodes: 1, Boot: lab.BootKernel, Accel: accel, Logger: log, DieWithParent: true})
	if l != nil {
		defer l.Down(context.WithoutCancel(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("bench: floor of %d at once: %w", len(workers), err)
	}
	if _, err := l.WaitReadyNode(wctx, 1); err != nil {
		return nil, fmt.Errorf("bench: floor of %d at once: head: %w", len(workers), err)
	}
	for _, w := range workers {
		if _, err := l.AddAs(wctx, lab.BootKernel, w.NIC); err != nil {
			return nil, fmt.Errorf("bench: floor of %d at once: %w", len(workers), err)
		}
	}
	times := make([]time.Duration, len(workers))
	if err := l.WaitReady(wctx, func(r lab.Ready) {
		if r.Node > 1 {
			times[r.Node-2] = time.Since(l.StartedAt(r.Node))
		}
	}); err != nil {
		return nil, fmt.Errorf("bench: floor of %d at once: %w", len(workers), err)
	}
	return times, nil
}

// pxeRun boots a PXE lab and returns each worker's power-on to ready and
// the head's bytes served per protocol.
func pxeRun(ctx context.Context, cfg NetbootConfig, img lab.Image, accel lab.Accel, log *slog.Logger, dir string, workers []lab.PXEWorker) ([]time.Duration, int64, int64, error) {
	wctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	l, err := lab.StartPXE(wctx, lab.PXEConfig{Config: lab.Config{Image: img, StateDir: dir, Accel: accel, Logger: log, DieWithParent: true}, Workers: workers,
		HeadArgs: []string{"drift.enroll=auto"}}) // the boot time measured includes enrolment, not an operator
	if l != nil {
		defer l.Down(context.WithoutCancel(ctx))
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("bench: pxe lab of %d: %w", len(workers), err)
	}
	times := make([]time.Duration, len(workers))
	if err := l.WaitReady(wctx, func(r lab.Ready) {
		if r.Node > 1 {
			times[r.Node-2] = time.Since(l.StartedAt(r.Node))
		}
	}); err != nil {
		return nil, 0, 0, fmt.Errorf("bench: pxe lab of %d: %w", len(workers), err)
	}
	r, err := labport.Exec(wctx, l.LabSock(1), labport.Request{Argv: []string{"drift", "netboot", "--json"}})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("bench: drift netboot on the head: %w", err)
	}
	var nb api.Netboot
	if err := json.Unmarshal(r.Stdout, &nb); err != nil {
		return nil, 0, 0, fmt.Errorf("bench: drift netboot --json: %w (%s)", err, r.Stdout)
	}
	return times, nb.TFTPBytes, nb.HTTPBytes, nil
}

// Print writes the figures.
func (r *NetbootResult) Print(w io.Writer) {
	secs := func(ds []time.Duration) string {
		out := ""
		for _, d := range ds {
			out += fmt.Sprintf(" %.1f", d.Seconds())
		}
		return out
	}
	floor := Median(r.Floor)
	fmt.Fprintf(w, "bench-netboot (accel %s): power-on to drift: ready, median and spread of %d\n", r.Accel, len(r.Floor))
	fmt.Fprintf(w, "  kernel+initramfs (floor)  %6.1f s  spread %.1f s (runs:%s; a worker joining a head that is up)\n", floor.Seconds(), Spread(r.Floor).Seconds(), secs(r.Floor))
	fmt.Fprintf(w, "  1 PXE worker              %6.1f s  (%.2fx the floor; goal: at most 2)  spread %.1f s (runs:%s)  served TFTP %s, HTTP %s (last run)\n",
		Median(r.One).Seconds(), ratio(Median(r.One), floor), Spread(r.One).Seconds(), secs(r.One), mb(r.OneTFTP), mb(r.OneHTTP))
	var slowest time.Duration
	for _, d := range r.Three {
		slowest = max(slowest, d)
	}
	slowest3 := slices.Max(append([]time.Duration{0}, r.Floor3...))
	fmt.Fprintf(w, "  3 kernel+initramfs at once %5.1f s  (slowest) each:%s s  (beside a head, NICs as below: 4 VMs share the host's cores)\n", slowest3.Seconds(), secs(r.Floor3))
	fmt.Fprintf(w, "  3 PXE workers at once     %6.1f s  (slowest; %.2fx the floor of 3 at once, goal: at most 2; %.2fx the floor of one) each:%s s  served TFTP %s, HTTP %s\n",
		slowest.Seconds(), ratio(slowest, slowest3), ratio(slowest, floor), secs(r.Three), mb(r.ThreeTFTP), mb(r.ThreeHTTP))
}

func ratio(a, b time.Duration) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

func mb(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }
