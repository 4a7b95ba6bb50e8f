package qemutests

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// A move whose source dies before its commit: the target holds a
// restored, stopped copy and never hears that it may run it; the job's
// home, seeing the source dead, drops that copy and starts the job again
// from its checkpoint. Samplers on the surviving nodes count the job's
// copies (held ones included) every 100 ms throughout: never two.

// moverMark names the mover's processes, for the samplers.
const moverMark = "MOVER"

// moverLines is how many lines the mover prints.
const moverLines = 500

// mover is a checkpointed counter attached from the head.
type mover struct {
	id  string
	run *bgExec
}

// startMover starts, from the head, a counter on node that checkpoints
// every 5 s, and returns once it has a checkpoint.
func startMover(ctx context.Context, t *testing.T, l *lab.Lab, node string) *mover {
	t.Helper()
	run := startExec(ctx, t, l, 1, "drift", "run", "--node", node, "--name", "mover", "--stay", "--checkpoint-every", "5s", "--", "sh", "-c",
		"i=1; while [ $i -le "+strconv.Itoa(moverLines)+" ]; do echo $i; i=$((i+1)); sleep 0.1; done # "+moverMark)
	for ctx.Err() == nil {
		js, _ := l.Jobs(ctx, 1)
		for _, j := range js {
			if j.Name == "mover" && j.Exit == nil && j.Checkpoint != nil {
				t.Logf("mover %s on %s, checkpointed at %s", j.ID, j.Node, j.Checkpoint.At.Format("15:04:05.0"))
				return &mover{id: j.ID, run: run}
			}
		}
		select {
		case <-run.done:
			t.Fatalf("the mover ended before its test: %+v, %v", run.res, run.err)
		case <-time.After(time.Second):
		}
	}
	t.Fatal(ctx.Err())
	return nil
}

// samplerScript counts, every 100 ms, the job inits of the mover on its
// node (a held copy counts as one), each line "UNIX-NANOSECONDS COUNT".
// It is Python (the test image carries it): busybox's date has no
// sub-second clock, and the nodes' clocks must be compared.
const samplerScript = `import os, time
while True:
    n = 0
    for p in os.listdir('/proc'):
        if p.isdigit():
            try:
                c = open('/proc/' + p + '/cmdline', 'rb').read()
            except OSError:
                continue
            if b'job-init' in c and b'` + moverMark + `' in c:
                n += 1
    print(time.time_ns(), n, flush=True)
    time.sleep(0.1)
`

// samplers are samplerScript running on some nodes, with each node's
// clock offset from the host's as they started.
type samplers struct {
	l     *lab.Lab
	nodes []int
	start map[int]clockOffset
}

// startSamplers starts samplerScript on each node, in the background of
// its shell, writing /tmp/copies.
func startSamplers(ctx context.Context, t *testing.T, l *lab.Lab, nodes ...int) *samplers {
	t.Helper()
	s := &samplers{l: l, nodes: nodes, start: map[int]clockOffset{}}
	for _, n := range nodes {
		off, err := measureClock(ctx, l, n)
		if err != nil {
			t.Fatalf("node %d's clock: %v", n, err)
		}
		s.start[n] = off
		if _, err := l.ExecOK(ctx, n, "sh", "-c", "cat >/tmp/sampler.py <<'EOF'\n"+samplerScript+"EOF\nsetsid python3 /tmp/sampler.py </dev/null >/tmp/copies 2>&1 & echo $! >/tmp/copies.pid"); err != nil {
			t.Fatalf("start the sampler on node %d: %v", n, err)
		}
	}
	return s
}

// clockOffset is how far a node's clock is ahead of the host's, within
// plus or minus within.
type clockOffset struct {
	ahead, within time.Duration
}

// measureClock reads node n's clock a few times and keeps the reading
// with the shortest round trip: the guests set their clocks from the
// emulated RTC at boot, to the second, and nothing keeps them together,
// so samples of two nodes can only be compared on the host's clock.
func measureClock(ctx context.Context, l *lab.Lab, n int) (clockOffset, error) {
	best := clockOffset{within: -1}
	for range 5 {
		t0 := time.Now()
		res, err := l.Exec(ctx, n, "adjtimex")
		rtt := time.Since(t0)
		if err != nil {
			return best, err
		}
		g, err := adjtimexTime(string(res.Stdout))
		if err != nil {
			return best, err
		}
		if best.within < 0 || rtt/2 < best.within {
			best = clockOffset{ahead: g.Sub(t0.Add(rtt / 2)), within: rtt / 2}
		}
	}
	return best, nil
}

// aheadOrBehind says an offset from another clock in words.
func aheadOrBehind(d time.Duration) string {
	if d < 0 {
		return (-d).Round(time.Millisecond).String() + " behind"
	}
	return d.Round(time.Millisecond).String() + " ahead of"
}

// adjtimexTime is the time busybox adjtimex prints (time.tv_sec and
// time.tv_usec lines): the guest's clock to the microsecond, where its
// date has only seconds.
func adjtimexTime(out string) (time.Time, error) {
	var sec, usec int64 = -1, -1
	for _, ln := range strings.Split(out, "\n") {
		f := strings.Fields(ln)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseInt(f[len(f)-1], 10, 64)
		switch {
		case err != nil:
		case f[0] == "time.tv_sec:":
			sec = v
		case f[0] == "time.tv_usec:":
			usec = v
		}
	}
	if sec < 0 || usec < 0 {
		return time.Time{}, fmt.Errorf("adjtimex printed %q: want time.tv_sec and time.tv_usec lines", out)
	}
	return time.Unix(sec, usec*1000), nil
}

// check stops the samplers and fails if, in any 100 ms window of the
// host's clock, the nodes together held more than one copy of the mover.
// Each node's samples are set on the host's clock by the mean of its
// offsets measured as the samplers started and now (logged with what the
// measurements leave unknown).
func (sp *samplers) check(ctx context.Context, t *testing.T) {
	t.Helper()
	type sample struct {
		at     int64 // on the host's clock
		copies int
	}
	per := map[int][]sample{}
	for _, n := range sp.nodes {
		end, err := measureClock(ctx, sp.l, n)
		if err != nil {
			t.Errorf("node %d's clock: %v", n, err)
			continue
		}
		ahead := (sp.start[n].ahead + end.ahead) / 2
		t.Logf("node %d's clock is %s the host's (%s as the samplers started, %s at their end; each reading within %s, %s)",
			n, aheadOrBehind(ahead), aheadOrBehind(sp.start[n].ahead), aheadOrBehind(end.ahead),
			sp.start[n].within.Round(time.Millisecond), end.within.Round(time.Millisecond))
		out, err := sp.l.ExecOK(ctx, n, "sh", "-c", "kill $(cat /tmp/copies.pid); cat /tmp/copies")
		if err != nil {
			t.Errorf("read the sampler of node %d: %v", n, err)
			continue
		}
		for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(ln)
			if len(f) != 2 {
				continue
			}
			at, err1 := strconv.ParseInt(f[0], 10, 64)
			c, err2 := strconv.Atoi(f[1])
			if err1 != nil || err2 != nil {
				t.Fatalf("node %d sampler line %q: want UNIX-NANOSECONDS COUNT", n, ln)
			}
			per[n] = append(per[n], sample{at - int64(ahead), c})
		}
	}
	// Each sample of one node against the latest sample of every other
	// taken at most 100 ms before it.
	worst, samples := 0, 0
	for n, ss := range per {
		samples += len(ss)
		for _, s := range ss {
			total := s.copies
			for m, os := range per {
				if m == n {
					continue
				}
				for i := len(os) - 1; i >= 0; i-- {
					if os[i].at <= s.at {
						if s.at-os[i].at <= int64(100*time.Millisecond) {
							total += os[i].copies
						}
						break
					}
				}
			}
			if total > worst {
				worst = total
			}
			if total > 1 {
				t.Errorf("at %s (host clock), nodes %v held %d copies of the mover", time.Unix(0, s.at).Format("15:04:05.000"), sp.nodes, total)
				return
			}
		}
	}
	t.Logf("samplers on nodes %v: %d samples, never more than %d copy of the mover", sp.nodes, samples, worst)
	if samples < 50 {
		t.Errorf("only %d samples: the samplers did not run", samples)
	}
}

// moveUntilHeld starts moving the mover from its node (node sourceN) to
// target's (node targetN), and returns once the target holds its restored
// copy and the source, its own copy frozen, is about to tell the target
// to run it: a failpoint on the source holds it there (a lab node takes
// failpoints, see migrate.Node.Failpoints).
func moveUntilHeld(ctx context.Context, t *testing.T, l *lab.Lab, m *mover, sourceN int, target string, targetN int) *bgExec {
	t.Helper()
	if _, err := l.ExecOK(ctx, sourceN, "sh", "-c", "mkdir -p /run/drift/failpoints && touch /run/drift/failpoints/before-commit"); err != nil {
		t.Fatalf("set the before-commit failpoint on node %d: %v", sourceN, err)
	}
	mig := startExec(ctx, t, l, 1, "drift", "migrate", m.id, target)
	hctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	held := regexp.MustCompile(`restored and held.* job=` + regexp.QuoteMeta(m.id) + `\b`)
	line, err := l.WaitFor(hctx, targetN, held)
	if err != nil {
		t.Fatalf("the move of %s to %s never held a restored copy there: %v", m.id, target, err)
	}
	t.Logf("node %d holds the mover: %s", targetN, line)
	if line, err = l.WaitFor(hctx, sourceN, regexp.MustCompile(`failpoint: the move waits.*before-commit`)); err != nil {
		t.Fatalf("node %d never reached its before-commit failpoint: %v", sourceN, err)
	}
	t.Logf("node %d waits to commit: %s", sourceN, line)
	return mig
}

// checkMover waits for the mover's drift run: every line once, the
// recovery said, exit 0. On failure it shows what the head logged of it.
func checkMover(ctx context.Context, t *testing.T, l *lab.Lab, m *mover) {
	t.Helper()
	defer func() {
		if t.Failed() {
			logs, _ := l.ExecOK(ctx, 1, "sh", "-c", "drift logs -n 3000 | grep "+m.id)
			t.Logf("the head's log of %s:\n%s", m.id, logs)
		}
	}()
	res, ok := m.run.waitUntil(time.Now().Add(4 * time.Minute))
	want := ""
	for i := 1; i <= moverLines; i++ {
		want += fmt.Sprintln(i)
	}
	switch {
	case !ok:
		t.Errorf("the mover's drift run still ran 4 minutes after its source died")
	case res.ExitCode != 0 || string(res.Stdout) != want || !strings.Contains(string(res.Stderr), "recovered on"):
		t.Errorf("the mover's drift run exited %d, stderr %q, stdout %s; want 1..%d once each, the recovery said, and 0", res.ExitCode, res.Stderr, describeLines(string(res.Stdout)), moverLines)
	default:
		t.Logf("the mover, whose source died before the commit, printed 1..%d once each; stderr: %s", moverLines, strings.TrimSpace(string(res.Stderr)))
	}
}
