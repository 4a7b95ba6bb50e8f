package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/driftcluster/drift/agent/labport"
)

// sampleScript prints a node's uptime, its CPU counters and every
// process's stat line: two samples give what each process used between
// them. One cat for all: a process per file would load the node more
// than what it measures.
const sampleScript = `cat /proc/uptime /proc/stat /proc/[0-9]*/stat 2>/dev/null`

// sampleProcs, if $DRIFT_BENCH_SAMPLE names a directory, samples every
// node's processes every period until ctx ends, appending each sample
// to DIR/TAG-nodeN.txt after a line "=== <seconds since start>". Which
// process took a node's CPU during a run is then a diff away.
func (b *batch) sampleProcs(ctx context.Context, tag string, period time.Duration) {
	dir := os.Getenv("DRIFT_BENCH_SAMPLE")
	if dir == "" {
		return
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	start := time.Now()
	for n := 1; n <= b.l.Nodes(); n++ {
		go func() {
			f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%s-node%d.txt", tag, n)), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
			if err != nil {
				return
			}
			defer f.Close()
			t := time.NewTicker(period)
			defer t.Stop()
			for {
				ectx, cancel := context.WithTimeout(ctx, time.Minute)
				res, err := labport.Exec(ectx, b.l.LabSock(n), labport.Request{Argv: []string{"sh", "-c", sampleScript}})
				cancel()
				if err == nil {
					fmt.Fprintf(f, "=== %.1f\n%s", time.Since(start).Seconds(), res.Stdout)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		}()
	}
}
