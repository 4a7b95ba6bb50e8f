package migrate

import (
	"runtime"

	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/procfs"
	"golang.org/x/sys/unix"
)

// Dumping a job on a busy node. CRIU's parasite code runs inside the
// dumped job's threads, so at the job's priority: a job at nice 19 beside
// other busy jobs at nice 19 gets a sliver of the CPU, and each of the
// parasite's many exchanges with CRIU waits for it. For the dump, its
// threads run at dumpNice; the image then says so, and the target sets
// the restored threads to the nice jobs run at before they run
// (settleNice).

// dumpNice is the nice value of a job's threads while CRIU dumps them,
// and criuNice the one CRIU itself runs at on the source: above the
// agent's other work (a burst of jobs starting, their streams), so that
// the first moves out of a node flooded with new jobs freeze them for
// less time. CFS still gives every other task its turn each period, so
// gossip is answered while a large job is dumped.
const (
	dumpNice = -5
	criuNice = -5
)

// niced runs start (which starts a process) on a thread set to nice, so
// the process starts at that nice value (Linux keeps one per thread, and
// a child takes its parent thread's), then sets the thread back. Where
// the nice value cannot be set (no CAP_SYS_NICE), start runs as is.
func niced(nice int, start func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tid := unix.Gettid()
	was, err := jobinit.ThreadNice(tid)
	if err != nil || unix.Setpriority(unix.PRIO_PROCESS, tid, nice) != nil {
		return start()
	}
	defer unix.Setpriority(unix.PRIO_PROCESS, tid, was)
	return start()
}

// raiseNice sets every thread of the tree rooted at pid that runs at a
// higher nice value than dumpNice to dumpNice, and returns what puts
// each back (threads that ended meanwhile are left out).
func raiseNice(pid int) (undo func()) {
	type was struct{ tid, nice int }
	var raised []was
	for _, tid := range (procfs.Proc{}).TreeThreads(pid) {
		n, err := jobinit.ThreadNice(tid)
		if err != nil || n <= dumpNice {
			continue
		}
		if unix.Setpriority(unix.PRIO_PROCESS, tid, dumpNice) == nil {
			raised = append(raised, was{tid, n})
		}
	}
	return func() {
		for _, w := range raised {
			unix.Setpriority(unix.PRIO_PROCESS, w.tid, w.nice)
		}
	}
}

// settleNice sets every thread of the restored tree rooted at pid that
// runs at a lower nice value than jobs do (its image was written while
// it was raised for its dump) to theirs.
func settleNice(pid int) {
	for _, tid := range (procfs.Proc{}).TreeThreads(pid) {
		if n, err := jobinit.ThreadNice(tid); err == nil && n < jobinit.Nice {
			unix.Setpriority(unix.PRIO_PROCESS, tid, jobinit.Nice)
		}
	}
}
