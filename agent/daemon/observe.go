package daemon

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/events"
	"github.com/driftcluster/drift/agent/metrics"
	"github.com/driftcluster/drift/agent/netboot"
	"github.com/driftcluster/drift/agent/storage"
	"github.com/driftcluster/drift/agent/supervise"
)

// watchPeriod is how often the observer looks at the members and at
// /cluster for changes to record.
const watchPeriod = time.Second

// observer is what the node tells about itself: its events (the node's
// part of the cluster's stream, drift events) and its Prometheus
// metrics, which count the events and read the node's state when
// scraped.
type observer struct {
	a       *agent
	cl      *cluster
	log     *events.Log
	metrics *metrics.Metrics
	storage func() api.StorageStatus // set by startStorage; nil: no storage gauges
	tracker atomic.Pointer[netboot.Tracker]
}

// newObserver makes the node's event log and metrics and hooks them to
// the job manager and the balancer: call it once both exist, before
// they run.
func (a *agent) newObserver(cl *cluster) *observer {
	o := &observer{a: a, cl: cl}
	o.metrics = metrics.New(metrics.Sources{
		Self:    a.node.Name,
		Nodes:   func() []api.Node { return cl.Nodes(time.Now()) },
		Jobs:    a.jobs.Local,
		Storage: func() api.StorageStatus { return o.storageStatus() },
		Netboot: o.netbootBytes,
	})
	o.log = &events.Log{Self: a.node.Name, OnEvent: o.metrics.Observe}
	a.jobs.Event = o.log.Record
	a.jobs.OnCheckpoint = o.metrics.Checkpoint
	a.bal.ex.Event = o.log.Record
	return o
}

// netbootTracker is the head's netboot Tracker, reporting each stage a
// machine reaches as an event.
func (o *observer) netbootTracker() *netboot.Tracker {
	t := &netboot.Tracker{OnStage: func(mac string, stage netboot.Stage) {
		o.log.Record(api.EventNetboot, map[string]any{"mac": mac, "stage": string(stage)})
	}}
	o.tracker.Store(t)
	return t
}

func (o *observer) netbootBytes() (tftp, http int64) {
	if t := o.tracker.Load(); t != nil {
		return t.Bytes()
	}
	return 0, 0
}

func (o *observer) storageStatus() api.StorageStatus {
	if o.storage == nil {
		return api.StorageStatus{}
	}
	return o.storage()
}

// serveStorage serves the head's export as srv.Run would, counting the
// bytes it sends.
func (o *observer) serveStorage(ctx context.Context, srv *storage.Server) error {
	addr := ":" + strconv.Itoa(storage.DefaultPort)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("storage server listen on %s: %w", addr, err)
	}
	return srv.Serve(ctx, o.metrics.CountListener(l))
}

// start watches the members and /cluster for changes to record, and
// returns the routes of the events and the metrics. Call it once the
// storage is started.
func (o *observer) start(ctx context.Context) map[string]http.Handler {
	o.a.sup.Start(ctx, supervise.Service{Name: "events", Run: o.watch})
	routes := (&events.Server{Log: o.log, Peers: &peers{a: o.a, cl: o.cl}}).Routes()
	api.AddRoutes(routes, o.metrics.Routes())
	return routes
}

// watch records joins, suspicions and deaths of members, and changes of
// /cluster, until ctx ends.
func (o *observer) watch(ctx context.Context) error {
	var w changes
	t := time.NewTicker(watchPeriod)
	defer t.Stop()
	for {
		for _, e := range w.members(o.cl.Nodes(time.Now())) {
			o.log.Record(e.kind, e.fields)
		}
		if o.storage != nil {
			if e, ok := w.storage(o.storage().Mount); ok {
				o.log.Record(e.kind, e.fields)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// change is an event to record.
type change struct {
	kind   string
	fields map[string]any
}

// changes turns successive looks at the members and at /cluster into
// events.
type changes struct {
	states map[string]string // member → state, as last seen
	mount  *api.MountStatus  // as last seen
}

// members returns the events of the members' states since the last look:
// a member new or back from the dead joins, one that stops answering is
// suspect, and one declared dead dies.
func (c *changes) members(nodes []api.Node) []change {
	if c.states == nil {
		c.states = map[string]string{}
	}
	var out []change
	for _, n := range nodes {
		was, seen := c.states[n.Name]
		c.states[n.Name] = n.State
		if seen && was == n.State {
			continue
		}
		f := map[string]any{"member": n.Name, "addr": n.Addr}
		if seen {
			f["was"] = was
		}
		switch n.State {
		case api.NodeAlive:
			out = append(out, change{api.EventJoin, f})
		case api.NodeSuspect:
			out = append(out, change{api.EventSuspect, f})
		case api.NodeDead:
			if seen { // a member long dead when first seen is old news
				out = append(out, change{api.EventDeath, f})
			}
		}
	}
	return out
}

// storage returns an event when /cluster was mounted, unmounted, became
// healthy or not, or changed source since the last look.
func (c *changes) storage(st api.MountStatus) (change, bool) {
	old := c.mount
	c.mount = &st
	if old != nil && old.Mounted == st.Mounted && old.Healthy == st.Healthy && old.Source == st.Source {
		return change{}, false
	}
	if old == nil && !st.Mounted && st.Error == "" {
		return change{}, false // not mounted yet, nothing wrong: the boot goes on
	}
	f := map[string]any{"mounted": st.Mounted, "healthy": st.Healthy, "target": st.Target}
	if st.Source != "" {
		f["source"] = st.Source
	}
	if st.Error != "" {
		f["error"] = st.Error
	}
	return change{api.EventStorage, f}, true
}
