package jobs

import "github.com/driftcluster/drift/agent/jobinit"

// InitArg is the first argument that makes drift-job (or driftd) run as
// a job's init (jobinit.Run).
const InitArg = jobinit.Arg

// JobNice is the nice value jobs run at.
const JobNice = jobinit.Nice
