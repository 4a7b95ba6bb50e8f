package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/driftcluster/drift/agent/api"
)

// The gauges, read from the agent at each scrape.
var (
	descLoad = prometheus.NewDesc("drift_node_load1",
		"This node's load average over one minute.", nil, nil)
	descRunnable = prometheus.NewDesc("drift_node_runnable_tasks",
		"Tasks runnable on this node now, as the balancer counts them.", nil, nil)
	descCPUs = prometheus.NewDesc("drift_node_cpus",
		"This node's CPU cores.", nil, nil)
	descMemTotal = prometheus.NewDesc("drift_node_memory_total_bytes",
		"This node's memory.", nil, nil)
	descMemFree = prometheus.NewDesc("drift_node_memory_available_bytes",
		"This node's memory available to new jobs.", nil, nil)
	descJobs = prometheus.NewDesc("drift_jobs",
		"Jobs running on this node, and exited jobs it is home to, by state.", []string{"state"}, nil)
	descMembers = prometheus.NewDesc("drift_members",
		"Members of the cluster as this node sees them, itself included, by state.", []string{"state"}, nil)
	descMounted = prometheus.NewDesc("drift_storage_mounted",
		"1 when the shared storage is mounted at /cluster on this node.", nil, nil)
	descHealthy = prometheus.NewDesc("drift_storage_healthy",
		"1 when /cluster is mounted and passed its last health check.", nil, nil)
	descStorageSize = prometheus.NewDesc("drift_storage_size_bytes",
		"Size of the shared storage, as /cluster reports it.", nil, nil)
	descStorageFree = prometheus.NewDesc("drift_storage_available_bytes",
		"Bytes available on the shared storage, as /cluster reports it.", nil, nil)
	descStorageSent = prometheus.NewDesc("drift_storage_served_bytes_total",
		"Bytes the head's storage export sent to the members.", nil, nil)
	descNetbootSent = prometheus.NewDesc("drift_netboot_served_bytes_total",
		"Bytes the head served to network-booting machines, by protocol.", []string{"protocol"}, nil)
)

var (
	jobStates    = []string{api.JobStarting, api.JobRunning, api.JobMigrating, api.JobExited}
	memberStates = []string{api.NodeAlive, api.NodeSuspect, api.NodeDead}
)

// gauges is a collector that reads Sources when scraped.
type gauges struct {
	src         Sources
	storageSent *atomic.Int64
}

func (g *gauges) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLoad, descRunnable, descCPUs, descMemTotal, descMemFree, descJobs,
		descMembers, descMounted, descHealthy, descStorageSize, descStorageFree, descStorageSent, descNetbootSent} {
		ch <- d
	}
}

func (g *gauges) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if g.src.Nodes != nil {
		states := map[string]int{}
		for _, n := range g.src.Nodes() {
			states[n.State]++
			if !n.Self {
				continue
			}
			gauge(descLoad, n.Load1)
			gauge(descRunnable, float64(n.Runnable))
			gauge(descCPUs, float64(n.CPUs))
			gauge(descMemTotal, float64(n.MemTotal))
			gauge(descMemFree, float64(n.MemFree))
		}
		for _, s := range memberStates {
			gauge(descMembers, float64(states[s]), s)
		}
	}
	if g.src.Jobs != nil {
		states := map[string]int{}
		for _, j := range g.src.Jobs() {
			if j.Node == g.src.Self || j.State == api.JobExited && j.Home == g.src.Self {
				states[j.State]++
			}
		}
		for _, s := range jobStates {
			gauge(descJobs, float64(states[s]), s)
		}
	}
	if g.src.Storage != nil {
		st := g.src.Storage()
		gauge(descMounted, boolValue(st.Mount.Mounted))
		gauge(descHealthy, boolValue(st.Mount.Mounted && st.Mount.Healthy))
		if st.Mount.Mounted && st.Mount.Total > 0 {
			gauge(descStorageSize, float64(st.Mount.Total))
			gauge(descStorageFree, float64(st.Mount.Free))
		}
		if st.Export != nil {
			ch <- prometheus.MustNewConstMetric(descStorageSent, prometheus.CounterValue, float64(g.storageSent.Load()))
		}
	}
	if g.src.Netboot != nil {
		tftp, http := g.src.Netboot()
		ch <- prometheus.MustNewConstMetric(descNetbootSent, prometheus.CounterValue, float64(tftp), "tftp")
		ch <- prometheus.MustNewConstMetric(descNetbootSent, prometheus.CounterValue, float64(http), "http")
	}
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
