package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/workload"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// MigrateConfig says what bench-migrate measures.
type MigrateConfig struct {
	ImageDir string   // drift-image output (image.json); required
	Sizes    []string // resident sizes of the jobs (drift-workload touch -rss); nil: 64M and 256M
	Dirty    string   // bytes each job dirties per second; "": 1M
	// MemoryMB is the RAM of each VM; 0: 1536, room for a 256 MB job,
	// its images on both sides and the restored copy.
	MemoryMB int
	Timeout  time.Duration // for the whole run; 0: 30 minutes
	Accel    lab.Accel     // "": lab.ResolveAccel, cached in the user cache directory
	Logger   *slog.Logger  // nil: discard
}

// MigrateResult is what one bench-migrate measured.
type MigrateResult struct {
	Accel     lab.Accel
	Dirty     string
	LinkBytes int64         // bytes netcat sent between the VMs
	LinkTime  time.Duration // how long they took (best of linkRuns)
	ExecRTT   time.Duration // a lab port round trip (hostname), part of each stop-and-copy step
	Sizes     []MigrateSize
}

// MigrateSize is one job size, moved both ways.
type MigrateSize struct {
	RSS      string            // as asked (drift-workload touch -rss)
	JobRSS   uint64            // the job's resident bytes as drift ps showed before the move
	Drift    api.MigrateResult // drift migrate --json
	StopCopy StopCopy          // the by-hand baseline
}

// StopCopy is a migration by hand, as a user would do it without drift:
// criu dump on the source (the job stops), the images sent with tar over
// netcat, criu restore on the target. The job is frozen from the dump's
// start to the restore's end.
type StopCopy struct {
	Dump, Copy, Restore time.Duration
	Bytes               int64 // the images' tar, as received
}

// Freeze is how long the job ran nowhere.
func (s StopCopy) Freeze() time.Duration { return s.Dump + s.Copy + s.Restore }

const (
	migPort    = "9170" // netcat port on the target
	linkMB     = 64     // bytes sent to measure the link, MiB
	linkRuns   = 3
	scDir      = "/tmp/sc" // stop-and-copy images, on each side
	scPIDFile  = "/tmp/sc.pid"
	rssTimeout = 2 * time.Minute
)

// Migrate boots two nodes and, for each size, moves a drift-workload
// touch job from node 1 to node 2 with drift migrate, then moves an
// identical job by hand (stop and copy), and measures the link between
// the nodes with netcat. Both jobs are drift jobs, started the same way,
// so the baseline moves the same process tree (the job's init and the
// toucher, in their own PID namespace) with CRIU's default options; it
// copies over plain TCP where drift uses the agents' mutual TLS, which
// favours the baseline.
func Migrate(ctx context.Context, cfg MigrateConfig) (*MigrateResult, error) {
	if cfg.Sizes == nil {
		cfg.Sizes = []string{"64M", "256M"}
	}
	if cfg.Dirty == "" {
		cfg.Dirty = "1M"
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1536
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 30 * time.Minute
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &MigrateResult{Dirty: cfg.Dirty}
	if res.Accel, err = resolveAccel(ctx, cfg.Accel, img, log); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "dmig-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: work, Nodes: 2, MemoryMB: cfg.MemoryMB, Accel: res.Accel, Logger: log, DieWithParent: true})
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer l.Down(context.WithoutCancel(ctx))
	for n := 1; n <= 2; n++ {
		log.Info("qemu command line", "node", n, "cmdline", l.CommandLine(n))
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := l.WaitReady(ctx, nil); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	src, _ := l.Ready(1)
	dst, _ := l.Ready(2)
	if _, err := l.WaitMembers(ctx, []int{1, 2}, lab.AllAlive(src.Name, dst.Name)); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	b := &migBench{l: l, log: log, src: src, dst: dst, dirty: cfg.Dirty}
	start := time.Now()
	if _, err := l.ExecOK(ctx, 1, "hostname"); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	res.ExecRTT = time.Since(start)
	if res.LinkBytes, res.LinkTime, err = b.link(ctx); err != nil {
		return nil, err
	}
	for _, size := range cfg.Sizes {
		s := MigrateSize{RSS: size}
		if s.Drift, s.JobRSS, err = b.drift(ctx, size); err != nil {
			return nil, err
		}
		if s.StopCopy, err = b.stopCopy(ctx, size); err != nil {
			return nil, err
		}
		res.Sizes = append(res.Sizes, s)
	}
	return res, nil
}

type migBench struct {
	l        *lab.Lab
	log      *slog.Logger
	src, dst lab.Ready // node 1, node 2
	dirty    string
	jobs     int
}

// exec runs argv on node n, failing unless it exits 0, and returns its
// stdout and how long it took as the host saw it.
func (b *migBench) exec(ctx context.Context, n int, argv ...string) (string, time.Duration, error) {
	start := time.Now()
	out, err := b.l.ExecOK(ctx, n, argv...)
	if err != nil {
		return out, 0, fmt.Errorf("bench: %w", err)
	}
	return out, time.Since(start), nil
}

// send runs shell script recv on node 2, which listens with netcat on
// migPort, then shell script send on node 1, which connects to it, and
// returns how long from the send's start until the receiver ended.
func (b *migBench) send(ctx context.Context, recv, send string) (time.Duration, error) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	received := make(chan error, 1)
	go func() {
		_, _, err := b.exec(lctx, 2, "gosh", "-c", recv)
		received <- err
	}()
	var (
		start time.Time
		err   error
	)
	// The listener starts asynchronously: retry while it is not there yet.
	for range 40 {
		time.Sleep(250 * time.Millisecond)
		start = time.Now()
		if _, _, err = b.exec(ctx, 1, "gosh", "-c", send); err == nil {
			break
		}
	}
	if err != nil {
		return 0, err
	}
	select {
	case err := <-received:
		return time.Since(start), err
	case <-time.After(time.Minute):
		return 0, fmt.Errorf("bench: the receiver on node 2 did not end a minute after the sender")
	}
}

// link measures the bandwidth between the nodes, best of linkRuns: a
// file in node 1's memory sent by netcat to a netcat on node 2 that
// drops it.
func (b *migBench) link(ctx context.Context) (int64, time.Duration, error) {
	const src = "/tmp/link.src"
	if _, _, err := b.exec(ctx, 1, "dd", "if=/dev/zero", "of="+src, "bs=1M", fmt.Sprintf("count=%d", linkMB)); err != nil {
		return 0, 0, err
	}
	defer b.exec(ctx, 1, "rm", src)
	var best time.Duration
	for range linkRuns {
		d, err := b.send(ctx, "netcat -l "+migPort+" > /dev/null", "netcat "+b.dst.Addr+" "+migPort+" < "+src)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: measure the link: %w", err)
		}
		if best == 0 || d < best {
			best = d
		}
	}
	return linkMB << 20, best, nil
}

// start starts a touch job of size on node 1, waits until it is resident,
// and returns it as drift ps lists it.
func (b *migBench) start(ctx context.Context, size string) (api.JobInfo, error) {
	b.jobs++
	name := fmt.Sprintf("bench-%d", b.jobs)
	if _, _, err := b.exec(ctx, 1, "drift", "run", "-d", "--stay", "--node", b.src.Name, "--name", name,
		"--", "drift-workload", "touch", "-rss", size, "-dirty", b.dirty); err != nil {
		return api.JobInfo{}, err
	}
	want, err := workload.ParseSize(size)
	if err != nil {
		return api.JobInfo{}, err
	}
	wctx, cancel := context.WithTimeout(ctx, rssTimeout)
	defer cancel()
	var last api.JobInfo
	for {
		js, err := b.l.Jobs(wctx, 1)
		for _, j := range js {
			if j.Name == name {
				last = j
				if j.State == "running" && j.RSS >= want {
					b.log.Info("job resident", "job", j.ID, "rss", j.RSS, "pid", j.PID)
					return j, nil
				}
			}
		}
		select {
		case <-wctx.Done():
			return last, fmt.Errorf("bench: job %s (touch -rss %s) not resident within %s: drift ps shows %+v (%v)", name, size, rssTimeout, last, err)
		case <-time.After(time.Second):
		}
	}
}

// drift moves a job of size with drift migrate and stops it.
func (b *migBench) drift(ctx context.Context, size string) (api.MigrateResult, uint64, error) {
	j, err := b.start(ctx, size)
	if err != nil {
		return api.MigrateResult{}, 0, err
	}
	res, err := b.l.Migrate(ctx, 1, j.ID, b.dst.Name)
	if err != nil {
		return res, 0, fmt.Errorf("bench: %w", err)
	}
	b.log.Info("drift migrate", "job", j.ID, "result", res)
	return res, j.RSS, b.kill(ctx, j.ID)
}

// stopCopy moves a job of size by hand: criu dump, tar over netcat,
// criu restore; then kills the restored job.
func (b *migBench) stopCopy(ctx context.Context, size string) (StopCopy, error) {
	var sc StopCopy
	for n := 1; n <= 2; n++ {
		if _, _, err := b.exec(ctx, n, "rm", "-rf", scDir, scPIDFile); err != nil {
			return sc, err
		}
		if _, _, err := b.exec(ctx, n, "mkdir", "-p", scDir); err != nil {
			return sc, err
		}
	}
	j, err := b.start(ctx, size)
	if err != nil {
		return sc, err
	}
	if _, sc.Dump, err = b.exec(ctx, 1, "criu", "dump", "-t", strconv.Itoa(j.PID), "-D", scDir, "-o", "dump.log"); err != nil {
		return sc, fmt.Errorf("%w; the end of %s/dump.log on node 1:\n%s", err, scDir, b.tail(ctx, 1, scDir+"/dump.log"))
	}
	// u-root's tar archives a directory relative to it and extracts into
	// one; it reads and writes pipes through /proc/self/fd.
	if sc.Copy, err = b.send(ctx, "netcat -l "+migPort+" | tar -x -f /proc/self/fd/0 "+scDir,
		"cd "+scDir+" && tar -c -f /proc/self/fd/1 . | netcat "+b.dst.Addr+" "+migPort); err != nil {
		return sc, fmt.Errorf("bench: copy the images: %w", err)
	}
	if _, sc.Restore, err = b.exec(ctx, 2, "criu", "restore", "-d", "-D", scDir, "-o", "restore.log", "--pidfile", scPIDFile); err != nil {
		return sc, fmt.Errorf("%w; the end of %s/restore.log on node 2:\n%s", err, scDir, b.tail(ctx, 2, scDir+"/restore.log"))
	}
	out, _, err := b.exec(ctx, 1, "gosh", "-c", "cd "+scDir+" && tar -c -f /proc/self/fd/1 . | wc -c")
	if err != nil {
		return sc, err
	}
	if f := strings.Fields(out); len(f) > 0 {
		sc.Bytes, _ = strconv.ParseInt(f[0], 10, 64)
	}
	pid, _, err := b.exec(ctx, 2, "cat", scPIDFile)
	if err != nil {
		return sc, err
	}
	if _, _, err := b.exec(ctx, 2, "kill", "-9", strings.TrimSpace(pid)); err != nil {
		return sc, fmt.Errorf("%w: the restored job is not running", err)
	}
	for n := 1; n <= 2; n++ {
		b.exec(ctx, n, "rm", "-rf", scDir, scPIDFile)
	}
	b.log.Info("stop and copy", "job", j.ID, "dump", sc.Dump, "copy", sc.Copy, "restore", sc.Restore, "bytes", sc.Bytes)
	return sc, nil
}

// kill stops job id and waits until drift ps shows it exited, so that
// its memory is free for the next step.
func (b *migBench) kill(ctx context.Context, id string) error {
	if _, _, err := b.exec(ctx, 1, "drift", "kill", "-s", "KILL", id); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := b.l.WaitJob(wctx, 1, id, func(j api.JobInfo) bool { return j.State != "running" && j.State != "migrating" }); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// tail is the end of a file on node n and the node's free memory, for
// error messages.
func (b *migBench) tail(ctx context.Context, n int, path string) string {
	out, _ := b.l.Exec(ctx, n, "tail", "-n", "15", path)
	mem, _ := b.l.Exec(ctx, n, "free", "-m")
	if out == nil || mem == nil {
		return "(unreadable)"
	}
	return string(out.Stdout) + string(out.Stderr) + "free memory on node " + strconv.Itoa(n) + ":\n" + string(mem.Stdout)
}

// Print writes the figures: per size, drift's freeze and total beside
// stop-and-copy's freeze and the floor (the images' size over the link's
// measured rate), and drift's freeze as a fraction of stop-and-copy's.
func (r *MigrateResult) Print(w io.Writer) {
	rate := float64(r.LinkBytes) / r.LinkTime.Seconds()
	fmt.Fprintf(w, "bench-migrate: drift-workload touch jobs dirtying %s/s, node 1 → node 2, accel %s\n", r.Dirty, r.Accel)
	fmt.Fprintf(w, "  link (netcat, %d MiB, best of %d)  %.1f MiB/s; lab port round trip %s (in each stop-and-copy step)\n",
		r.LinkBytes>>20, linkRuns, rate/(1<<20), r.ExecRTT.Round(time.Millisecond))
	for _, s := range r.Sizes {
		sc := s.StopCopy
		floor := time.Duration(float64(sc.Bytes) / rate * float64(time.Second))
		fmt.Fprintf(w, "  %s job (resident %.0f MiB):\n", s.RSS, float64(s.JobRSS)/(1<<20))
		fmt.Fprintf(w, "    drift migrate   freeze %7.2f s   total %7.2f s   %6.1f MiB moved in %d pre-copy rounds and a final dump\n",
			s.Drift.Freeze.Seconds(), s.Drift.Total.Seconds(), float64(s.Drift.Bytes)/(1<<20), s.Drift.Rounds)
		fmt.Fprintf(w, "    stop and copy   freeze %7.2f s   (criu dump %.2f s, tar|netcat %.2f s, criu restore %.2f s; %.1f MiB of images)\n",
			sc.Freeze().Seconds(), sc.Dump.Seconds(), sc.Copy.Seconds(), sc.Restore.Seconds(), float64(sc.Bytes)/(1<<20))
		fmt.Fprintf(w, "    floor           %7.2f s   (the images over the link's rate)\n", floor.Seconds())
		if sc.Freeze() > 0 {
			fmt.Fprintf(w, "    ratio           %7.2f     drift's freeze / stop and copy's freeze\n", s.Drift.Freeze.Seconds()/sc.Freeze().Seconds())
		}
	}
}

// String is the result as JSON, for logs.
func (r *MigrateResult) String() string {
	b, _ := json.Marshal(r)
	return string(b)
}
