// Package metrics is a node's Prometheus metrics, served by the agent at
// /metrics on its API port (over the API's mutual TLS, to the cluster's
// certificate or a metrics reader's from `drift cert`). Counters and
// histograms follow the node's events (Observe); gauges are read from the
// agent when Prometheus scrapes.
package metrics

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/driftcluster/drift/agent/api"
)

// Sources are where the gauges are read at each scrape. A nil source
// leaves its gauges out.
type Sources struct {
	Self    string                    // this node's name
	Nodes   func() []api.Node         // the members, this node among them (Self set)
	Jobs    func() []api.JobInfo      // the jobs this node is home to or runs
	Storage func() api.StorageStatus  // /cluster on this node, and the head's export
	Netboot func() (tftp, http int64) // bytes the head served to network-booting machines
}

// Metrics are one agent's metrics.
type Metrics struct {
	reg         *prometheus.Registry
	migrations  *prometheus.CounterVec
	freeze      prometheus.Histogram
	total       prometheus.Histogram
	moved       prometheus.Histogram
	netboot     *prometheus.CounterVec
	events      *prometheus.CounterVec
	checkpoints *prometheus.CounterVec
	ckFreeze    prometheus.Histogram
	ckBytes     prometheus.Histogram
	recoveries  *prometheus.CounterVec
	storageSent atomic.Int64
}

// New returns the metrics of an agent whose gauges come from src.
func New(src Sources) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		migrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drift_migrations_total",
			Help: "Migrations of jobs from this node, by result: ok, refused (by the target, before anything moved), failed (the job runs here still).",
		}, []string{"result"}),
		freeze: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drift_migration_freeze_seconds",
			Help:    "How long a job migrated from this node was frozen: from the final dump to running on its target.",
			Buckets: prometheus.ExponentialBuckets(0.1, 2, 10), // 0.1 s to 51 s
		}),
		total: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drift_migration_duration_seconds",
			Help:    "How long a migration from this node took in all, pre-copy rounds included.",
			Buckets: prometheus.ExponentialBuckets(0.5, 2, 10), // 0.5 s to 256 s
		}),
		moved: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drift_migration_transferred_bytes",
			Help:    "Bytes of images a migration from this node sent to its target, pre-copy rounds included.",
			Buckets: prometheus.ExponentialBuckets(1<<20, 4, 8), // 1 MiB to 16 GiB
		}),
		netboot: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drift_netboot_requests_total",
			Help: "Requests of network-booting machines the head answered, by the boot stage they reached.",
		}, []string{"stage"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drift_events_total",
			Help: "Events this node recorded, by kind (drift events lists them).",
		}, []string{"kind"}),
		checkpoints: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drift_checkpoints_total",
			Help: "Checkpoints of jobs running on this node, by result: ok, skipped (the job cannot be checkpointed, or there is no room), failed.",
		}, []string{"result"}),
		ckFreeze: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drift_checkpoint_freeze_seconds",
			Help:    "How long a checkpoint froze its job on this node.",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 10), // 50 ms to 25 s
		}),
		ckBytes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "drift_checkpoint_bytes",
			Help:    "Size of the checkpoints this node wrote to /cluster.",
			Buckets: prometheus.ExponentialBuckets(1<<20, 4, 8), // 1 MiB to 16 GiB
		}),
		recoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "drift_recoveries_total",
			Help: "Jobs homed here started again from a checkpoint after their node died, by result: ok, failed (the job is lost).",
		}, []string{"result"}),
	}
	for _, r := range api.MigrationResults { // every series exists from the start, at 0
		m.migrations.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "skipped", "failed"} {
		m.checkpoints.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "failed"} {
		m.recoveries.WithLabelValues(r)
	}
	m.reg.MustRegister(m.migrations, m.freeze, m.total, m.moved, m.netboot, m.events, m.checkpoints, m.ckFreeze, m.ckBytes, m.recoveries,
		&gauges{src: src, storageSent: &m.storageSent},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is where the metrics are registered, for tests and for more.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Observe counts an event: migrations by result, with their freeze time,
// duration and bytes; netboot stages; every event by kind.
func (m *Metrics) Observe(e api.Event) {
	m.events.WithLabelValues(e.Kind).Inc()
	switch e.Kind {
	case api.EventMigration:
		result := e.Str("result")
		m.migrations.WithLabelValues(result).Inc()
		if result != api.MigrationOK {
			return
		}
		if v, ok := e.Float("freeze_seconds"); ok {
			m.freeze.Observe(v)
		}
		if v, ok := e.Float("total_seconds"); ok {
			m.total.Observe(v)
		}
		if v, ok := e.Float("bytes"); ok {
			m.moved.Observe(v)
		}
	case api.EventNetboot:
		m.netboot.WithLabelValues(e.Str("stage")).Inc()
	case api.EventRecovery:
		switch {
		case e.Str("error") != "":
			m.recoveries.WithLabelValues("failed").Inc()
		case e.Str("to") != "" && e.Fields["home"] == nil:
			m.recoveries.WithLabelValues("ok").Inc()
		}
	}
}

// Checkpoint counts a checkpoint taken on this node (result "ok", with
// its freeze and size), skipped or failed.
func (m *Metrics) Checkpoint(result string, freeze time.Duration, bytes int64) {
	m.checkpoints.WithLabelValues(result).Inc()
	if result == "ok" {
		m.ckFreeze.Observe(freeze.Seconds())
		m.ckBytes.Observe(float64(bytes))
	}
}

// Handler serves the metrics in Prometheus' text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Routes are the metrics endpoint, for api.Server.Routes.
func (m *Metrics) Routes() map[string]http.Handler {
	return map[string]http.Handler{"GET " + api.MetricsPath: m.Handler()}
}

// CountListener wraps the head's storage export listener: the bytes it
// sends on its connections are counted as storage served.
func (m *Metrics) CountListener(l net.Listener) net.Listener {
	return &countingListener{Listener: l, n: &m.storageSent}
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}
