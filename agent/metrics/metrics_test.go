package metrics

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/driftcluster/drift/agent/api"
)

func testSources() Sources {
	return Sources{
		Self: "drift-a",
		Nodes: func() []api.Node {
			return []api.Node{
				{Name: "drift-a", Self: true, State: api.NodeAlive, Load1: 1.5, Runnable: 2, CPUs: 2, MemTotal: 1 << 30, MemFree: 1 << 29},
				{Name: "drift-b", State: api.NodeAlive},
				{Name: "drift-c", State: api.NodeDead},
			}
		},
		Jobs: func() []api.JobInfo {
			return []api.JobInfo{
				{ID: "1", Node: "drift-a", Home: "drift-a", State: api.JobRunning},
				{ID: "2", Node: "drift-b", Home: "drift-a", State: api.JobRunning}, // counted where it runs
				{ID: "3", Node: "drift-a", State: api.JobMigrating},
				{ID: "4", Node: "drift-b", Home: "drift-a", State: api.JobExited},
			}
		},
		Storage: func() api.StorageStatus {
			return api.StorageStatus{Mount: api.MountStatus{Mounted: true, Healthy: true, Total: 100, Free: 40}, Export: &api.StorageExport{}}
		},
		Netboot: func() (int64, int64) { return 10, 20 },
	}
}

// Every metric's name, type, unit and help pass Prometheus' own lint.
func TestMetricNamesLint(t *testing.T) {
	m := New(testSources())
	m.Observe(api.Event{Kind: api.EventMigration, Fields: map[string]any{"result": api.MigrationOK, "freeze_seconds": 1.2, "total_seconds": 5.0, "bytes": int64(8 << 20)}})
	m.Observe(api.Event{Kind: api.EventNetboot, Fields: map[string]any{"stage": "kernel"}})
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	n, err := testutil.GatherAndCount(m.Registry())
	if err != nil || n == 0 {
		t.Fatalf("GatherAndCount = %d, %v", n, err)
	}
}

func TestMigrationCounters(t *testing.T) {
	m := New(Sources{})
	for _, r := range api.MigrationResults {
		if v := testutil.ToFloat64(m.migrations.WithLabelValues(r)); v != 0 {
			t.Errorf("drift_migrations_total{result=%q} before any = %v, want 0", r, v)
		}
	}
	m.Observe(api.Event{Kind: api.EventMigration, Fields: map[string]any{"result": api.MigrationOK, "freeze_seconds": 1.5, "total_seconds": 4.0, "bytes": int64(3 << 20)}})
	m.Observe(api.Event{Kind: api.EventMigration, Fields: map[string]any{"result": api.MigrationFailed, "error": "restore"}})
	m.Observe(api.Event{Kind: api.EventMigration, Fields: map[string]any{"result": api.MigrationOK, "freeze_seconds": 0.5, "total_seconds": 2.0, "bytes": 1 << 20}})
	want := `
# HELP drift_migrations_total Migrations of jobs from this node, by result: ok, refused (by the target, before anything moved), failed (the job runs here still).
# TYPE drift_migrations_total counter
drift_migrations_total{result="failed"} 1
drift_migrations_total{result="ok"} 2
drift_migrations_total{result="refused"} 0
`
	if err := testutil.CollectAndCompare(m.migrations, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	if got := testutil.CollectAndCount(m.freeze); got != 1 {
		t.Errorf("freeze histogram series = %d, want 1", got)
	}
	out, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range out {
		if mf.GetName() == "drift_migration_freeze_seconds" {
			h := mf.GetMetric()[0].GetHistogram()
			if h.GetSampleCount() != 2 || h.GetSampleSum() != 2.0 {
				t.Errorf("freeze histogram: %d samples summing %v, want 2 summing 2 (failures are not observed)", h.GetSampleCount(), h.GetSampleSum())
			}
		}
	}
}

func TestGauges(t *testing.T) {
	m := New(testSources())
	want := `
# HELP drift_jobs Jobs running on this node, and exited jobs it is home to, by state.
# TYPE drift_jobs gauge
drift_jobs{state="exited"} 1
drift_jobs{state="migrating"} 1
drift_jobs{state="running"} 1
drift_jobs{state="starting"} 0
# HELP drift_members Members of the cluster as this node sees them, itself included, by state.
# TYPE drift_members gauge
drift_members{state="alive"} 2
drift_members{state="dead"} 1
drift_members{state="suspect"} 0
# HELP drift_node_load1 This node's load average over one minute.
# TYPE drift_node_load1 gauge
drift_node_load1 1.5
# HELP drift_storage_healthy 1 when /cluster is mounted and passed its last health check.
# TYPE drift_storage_healthy gauge
drift_storage_healthy 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "drift_jobs", "drift_members", "drift_node_load1", "drift_storage_healthy"); err != nil {
		t.Error(err)
	}
}

func TestCountListener(t *testing.T) {
	m := New(Sources{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := m.CountListener(l)
	defer cl.Close()
	go func() {
		c, err := cl.Accept()
		if err != nil {
			return
		}
		c.Write(make([]byte, 1000))
		c.Close()
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	n := 0
	for {
		k, err := c.Read(buf[n:])
		n += k
		if err != nil {
			break
		}
	}
	c.Close()
	if n != 1000 || m.storageSent.Load() != 1000 {
		t.Errorf("read %d bytes, counted %d; want 1000 both", n, m.storageSent.Load())
	}
}

func TestCheckpointAndRecoveryCounters(t *testing.T) {
	m := New(Sources{})
	m.Checkpoint("ok", 1500*time.Millisecond, 3<<20)
	m.Checkpoint("skipped", 0, 0)
	m.Observe(api.Event{Kind: api.EventRecovery, Fields: map[string]any{"job": "a-1", "from": "x", "to": "y"}})
	m.Observe(api.Event{Kind: api.EventRecovery, Fields: map[string]any{"job": "a-2", "from": "x", "error": "no live node"}})
	m.Observe(api.Event{Kind: api.EventRecovery, Fields: map[string]any{"job": "a-3", "from": "x", "to": "y", "home": true}})
	want := `
# HELP drift_recoveries_total Jobs homed here started again from a checkpoint after their node died, by result: ok, failed (the job is lost).
# TYPE drift_recoveries_total counter
drift_recoveries_total{result="failed"} 1
drift_recoveries_total{result="ok"} 1
# HELP drift_checkpoints_total Checkpoints of jobs running on this node, by result: ok, skipped (the job cannot be checkpointed, or there is no room), failed.
# TYPE drift_checkpoints_total counter
drift_checkpoints_total{result="failed"} 0
drift_checkpoints_total{result="ok"} 1
drift_checkpoints_total{result="skipped"} 1
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), "drift_recoveries_total", "drift_checkpoints_total"); err != nil {
		t.Error(err)
	}
}
