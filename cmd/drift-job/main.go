// Command drift-job is what runs inside every job beside the user's
// program: the job's init (drift-job job-init) and, for a task of a
// sweep, its wrapper (drift-job task-exec). The agent starts it; it is
// small on purpose, since it is dumped with its job at every move and
// checkpoint, and started with every job.
package main

import (
	"fmt"
	"os"

	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/taskexec"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case jobinit.Arg:
			os.Exit(jobinit.Run(os.Args[2:]))
		case taskexec.Arg:
			os.Exit(taskexec.Run(os.Args[2:]))
		}
	}
	fmt.Fprintf(os.Stderr, "drift-job runs inside drift's jobs, started by the agent (%s or %s); to run a program in the pool, use drift run\n", jobinit.Arg, taskexec.Arg)
	os.Exit(2)
}
