package jobs

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// A job's like are the jobs of the same command homed here that ended
// well since it started; their CPU time is every stint's, as the stints
// told it. Once one ends, the home tells the stints of the others the
// median, and the CPU time their earlier stints used; the node that runs
// one then knows how much CPU time it has left.
func TestLikeJobs(t *testing.T) {
	m := &Manager{Self: "drift-aaaaaa", Logger: slog.New(slog.DiscardHandler)}
	m.init()
	now := time.Now()
	job := func(argv []string, started time.Time) *homeJob {
		return newHomeJob(m.tasks.Go, api.JobInfo{Argv: argv, Started: started})
	}
	ended := func(h *homeJob, at time.Time, code int, stints ...float64) *homeJob {
		for i, cpu := range stints {
			if i < len(stints)-1 {
				localSink{h, i + 1}.end(nil, handOver{CPU: cpu})
			} else {
				localSink{h, i + 1}.end(&api.ExitStatus{Code: code, CPU: cpu}, handOver{})
			}
		}
		h.mu.Lock()
		h.exitAt = at
		h.mu.Unlock()
		return h
	}
	var mu sync.Mutex
	told := map[string][]api.Frame{}
	stint := func(name string, h *homeJob, epoch int) {
		h.runsOn(epoch, "drift-bbbbbb", 1, func(f api.Frame) {
			mu.Lock()
			defer mu.Unlock()
			told[name] = append(told[name], f)
		}, "")
	}
	work := []string{"render", "frame"}
	running := job(work, now.Add(-time.Minute))
	// running moved once, using 4 s, and runs on another node now.
	localSink{running, 1}.end(nil, handOver{CPU: 4})
	stint("running", running, 2)
	alone := job([]string{"alone"}, now.Add(-time.Minute))
	stint("alone", alone, 1)
	m.homes = map[string]*homeJob{
		"r": running, "alone": alone,
		// like it, ended since it started: 10+20, 40 and 35 s
		"a": ended(job(work, now.Add(-time.Minute)), now.Add(-10*time.Second), 0, 10, 20),
		"b": ended(job(work, now.Add(-time.Minute)), now.Add(-5*time.Second), 0, 40),
		"c": ended(job(work, now.Add(-time.Minute)), now, 0, 35),
		// not like it
		"failed":  ended(job(work, now.Add(-time.Minute)), now, 1, 1),
		"before":  ended(job(work, now.Add(-3*time.Minute)), now.Add(-2*time.Minute), 0, 1),
		"another": ended(job([]string{"render", "other"}, now.Add(-time.Minute)), now, 0, 1),
	}
	m.tellLike(work)
	mu.Lock()
	defer mu.Unlock()
	if len(told["alone"]) != 0 {
		t.Errorf("a job with no like was told %q", told["alone"])
	}
	var r runner
	for _, f := range told["running"] {
		r.control(f)
	}
	if got, want := r.workLeft(6*time.Second), 25*time.Second; got != want {
		t.Errorf("work left = %v, want %v (the median of 30, 35 and 40 s, less 4+6 s); the home told %q", got, want, told["running"])
	}
	var none runner
	if got := none.workLeft(time.Second); got != 0 {
		t.Errorf("work left of a job whose home said nothing = %v, want 0 (not known)", got)
	}
}

// A stint tells the CPU time its processes used as it ends.
func TestStintTellsCPU(t *testing.T) {
	r, s := startStint(t, "sh", "-c", "i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done")
	var st *api.ExitStatus
	select {
	case st = <-s.ended:
	case <-time.After(time.Minute):
		t.Fatal("the busy loop did not end")
	}
	<-r.done
	if st == nil || st.Code != 0 || st.CPU <= 0.05 {
		t.Fatalf("exit = %+v, want code 0 and the CPU time of the loop", st)
	}
}
