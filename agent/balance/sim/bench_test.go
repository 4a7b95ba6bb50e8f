package sim

import (
	"fmt"
	"testing"
)

// BenchmarkSim reports, for 3 and 1000 nodes, makespan over ideal with and
// without balancing, mean slowdown and migrations per job.
func BenchmarkSim(b *testing.B) {
	for _, n := range []int{3, 1000} {
		jobs := 3 * n
		var js []JobSpec
		for i := range jobs {
			js = append(js, JobSpec{ID: fmt.Sprint(i), Work: 600, RSS: 64 << 20, Home: fmt.Sprintf("n%d", i%max(1, n/10))})
		}
		for _, bal := range []bool{false, true} {
			b.Run(fmt.Sprintf("nodes=%d/balance=%v", n, bal), func(b *testing.B) {
				var r Result
				for b.Loop() {
					r = Run(Config{Nodes: nodes(n), Jobs: js, Balance: bal})
				}
				b.ReportMetric(r.Ratio(), "makespan/ideal")
				b.ReportMetric(r.MeanSlowdown, "slowdown")
				b.ReportMetric(float64(r.Migrations)/float64(jobs), "moves/job")
			})
		}
	}
}
