package membership

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/nodeinfo"
	metrics "github.com/hashicorp/go-metrics"
)

// sentSink counts the bytes memberlist reports sending (UDP packets and
// TCP push/pull streams), across every agent in the process.
type sentSink struct {
	metrics.BlackholeSink
	bytes atomic.Int64
}

func (s *sentSink) IncrCounterWithLabels(key []string, val float32, _ []metrics.Label) {
	if k := strings.Join(key, "."); strings.HasSuffix(k, "udp.sent") || strings.HasSuffix(k, "tcp.sent") {
		s.bytes.Add(int64(val))
	}
}

// BenchmarkConverge starts N agents on loopback with drift's real timing,
// joins them all to the first, and reports the seconds until every agent
// lists all N alive (s/converge) and the gossip bytes each node sends per
// second once converged (B/node/s). `make bench-join` runs it with
// `go test -run XXX -bench Converge -benchtime 1x ./agent/membership`.
func BenchmarkConverge(b *testing.B) {
	sink := &sentSink{}
	cfg := metrics.DefaultConfig("drift")
	cfg.EnableRuntimeMetrics = false
	cfg.EnableHostname = false
	if _, err := metrics.NewGlobal(cfg, sink); err != nil {
		b.Fatal(err)
	}
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("agents=%d", n), func(b *testing.B) {
			for range b.N {
				converge, perNode, frac := convergeOnce(b, n, sink)
				b.ReportMetric(converge.Seconds(), "s/converge")
				b.ReportMetric(frac, "converged-frac")
				b.ReportMetric(perNode, "B/node/s")
				b.Logf("%d agents: converged in %.2fs; %.0f gossip bytes per node per second", n, converge.Seconds(), perNode)
			}
		})
	}
}

func convergeOnce(b *testing.B, n int, sink *sentSink) (converge time.Duration, perNode, frac float64) {
	key := mustKey(b)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	meta := nodeinfo.Info{Cores: 2, CPUModel: "AMD EPYC", Speed: 1, MemTotal: 8 << 30, MemFree: 6 << 30, Role: "worker", Version: "bench", APIPort: 7947}
	quiet := slog.New(slog.DiscardHandler)
	ms := make([]*Membership, n)
	var first string
	start := time.Now()
	for i := range ms {
		port := freePort(b)
		m, err := New(Config{Name: fmt.Sprintf("drift-%06d", i), BindAddr: "127.0.0.1", Port: port, Key: key, Logger: quiet,
			Meta: func() nodeinfo.Info { return meta }})
		if err != nil {
			b.Fatal(err)
		}
		ms[i] = m
		wg.Add(1)
		go func() { defer wg.Done(); m.Run(ctx) }()
		for !m.started() {
			time.Sleep(time.Millisecond)
		}
		if i == 0 {
			first = fmt.Sprintf("127.0.0.1:%d", port)
		} else {
			m.Join([]string{first})
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := true
		frac = 1
		for _, m := range ms {
			if m.Alive() != n {
				done = false
				break
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			// On 2 cores, 200 agents in one process may not all see each
			// other: report how far they got rather than fail the run.
			least := n
			for _, m := range ms {
				least = min(least, m.Alive())
			}
			b.Logf("%d agents did not all converge in 60s: the least-informed sees %d", n, least)
			frac = float64(least) / float64(n)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	converge = time.Since(start)

	const window = 5 * time.Second
	before := sink.bytes.Load()
	time.Sleep(window)
	sent := sink.bytes.Load() - before
	return converge, float64(sent) / float64(n) / window.Seconds(), frac
}

// benchSizes are the cluster sizes BenchmarkConverge measures.
var benchSizes = []int{50, 200}
