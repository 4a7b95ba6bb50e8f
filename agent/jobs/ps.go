package jobs

// Listing jobs: each node lists the jobs it is home to and the stints it
// runs (Local); drift ps asks every node and merges the lists.

import (
	"context"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// psTimeout bounds how long `drift ps` waits for each node.
const psTimeout = 5 * time.Second

// Local lists the jobs homed or running here.
func (m *Manager) Local() []api.JobInfo { return m.local(true) }

// Brief lists the jobs homed or running here as Local does, without the
// CPU and memory they use, which cost reads of /proc for every process.
func (m *Manager) Brief() []api.JobInfo { return m.local(false) }

func (m *Manager) local(usage bool) []api.JobInfo {
	m.init()
	m.mu.Lock()
	var out []api.JobInfo
	for _, h := range m.homes {
		out = append(out, h.snapshot())
	}
	runners := make(map[string]*runner, len(m.runners))
	for id, r := range m.runners {
		runners[id] = r
	}
	m.mu.Unlock()
	for i := range out {
		if r := runners[out[i].ID]; r != nil {
			if usage {
				out[i].CPU, out[i].RSS = r.usage(&m.psMeter)
			}
			out[i].PID = r.pid
			if r.moving() && out[i].State == api.JobRunning {
				out[i].State = api.JobMigrating
			}
			delete(runners, out[i].ID)
		}
	}
	for id, r := range runners {
		info := api.JobInfo{ID: id, Node: m.Self, State: api.JobRunning, PID: r.pid}
		if r.moving() {
			info.State = api.JobMigrating
		}
		if usage {
			info.CPU, info.RSS = r.usage(&m.psMeter)
		}
		out = append(out, info)
	}
	return out
}

func (m *Manager) handleList(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, m.Local())
}

// handlePS lists every job in the cluster: each node's own list, merged
// (the home knows a job's record, the running node its CPU and memory).
func (m *Manager) handlePS(w http.ResponseWriter, r *http.Request) {
	all := map[string]api.JobInfo{}
	merge := func(list []api.JobInfo) {
		for _, j := range list {
			cur, ok := all[j.ID]
			switch {
			case !ok:
				all[j.ID] = j
			case j.Home != "": // the home's record, with the runner's figures
				j.CPU, j.RSS = max(j.CPU, cur.CPU), max(j.RSS, cur.RSS)
				j.State = movingState(j.State, cur.State)
				all[j.ID] = j
			default:
				cur.CPU, cur.RSS = max(j.CPU, cur.CPU), max(j.RSS, cur.RSS)
				cur.State = movingState(cur.State, j.State)
				all[j.ID] = cur
			}
		}
	}
	merge(m.Local())
	lists, errs := m.askPeers(r.Context())
	for _, list := range lists {
		merge(list)
	}
	out := make([]api.JobInfo, 0, len(all))
	for _, j := range all {
		out = append(out, j)
	}
	sort.Slice(out, func(i, k int) bool {
		return out[i].Started.Before(out[k].Started) || out[i].Started.Equal(out[k].Started) && out[i].ID < out[k].ID
	})
	if len(errs) > 0 {
		slices.SortFunc(errs, func(a, b api.NodeError) int { return strings.Compare(a.Node, b.Node) })
		m.log().Warn("ps: some nodes did not answer", "errors", errs)
	}
	api.WriteJSON(w, api.PSResult{Jobs: out, Unanswered: errs})
}

// movingState is a job's state in `drift ps`: the home's, except that a
// running job whose runner is moving it is migrating.
func movingState(home, runner string) string {
	if home == api.JobRunning && runner == api.JobMigrating {
		return api.JobMigrating
	}
	return home
}

// askPeers asks every other node for its own jobs, all at once, each
// within psTimeout; it returns the lists it got and, for each node that
// did not answer, why.
func (m *Manager) askPeers(ctx context.Context) ([][]api.JobInfo, []api.NodeError) {
	if m.Peers == nil {
		return nil, nil
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		lists [][]api.JobInfo
		errs  []api.NodeError
	)
	for _, n := range m.Peers.Nodes() {
		if n == m.Self {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := m.Peers.Client(n)
			var list []api.JobInfo
			if err == nil {
				ctx, cancel := context.WithTimeout(ctx, psTimeout)
				list, err = c.Jobs(ctx)
				cancel()
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, api.NodeError{Node: n, Error: err.Error()})
				return
			}
			lists = append(lists, list)
		}()
	}
	wg.Wait()
	return lists, errs
}
