package migrate

import (
	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/procfs"
	"golang.org/x/sys/unix"
)

// Dumping a job on a busy node. CRIU's parasite code runs inside the
// dumped job's threads, so at the job's priority: a job at nice 19 beside
// other busy jobs at nice 19 gets a sliver of the CPU, and each of the
// parasite's many exchanges with CRIU waits for it. For the dump, its
// threads run at nice 0; the image then says 0, and the target sets the
// restored threads to the nice jobs run at before they run (settleNice).

// dumpNice is the nice value of a job's threads while CRIU dumps them.
const dumpNice = 0

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
