package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/enroll"
	"github.com/driftcluster/drift/agent/membership"
)

// On the head's DRIFT-DATA, beside the enrolment's decisions: the key in
// use since the last rekey, and the IDs of the keys rekeys retired, so
// that a head booted again from a medium made before the rekey uses the
// newer key instead of the one its medium carries.
const (
	keptKeyName    = "cluster.key"
	retiredKeyName = "retired-keys"
)

// rekeyService is this node's part of drift rekey and drift remove: it
// runs them when asked (enroll.Rotation) and takes each step a rekey
// sends it.
type rekeyService struct {
	a   *agent
	cl  *cluster
	rot *enroll.Rotation

	mu       sync.Mutex // one step at a time
	lastJoin time.Time  // when joinRefused last spoke
}

// rekeyRoutes returns the API routes of drift rekey and drift remove.
func (a *agent) rekeyRoutes(cl *cluster) map[string]http.Handler {
	s := &rekeyService{a: a, cl: cl}
	s.rot = &enroll.Rotation{
		Self: a.node.Name, ClusterID: a.keys.ClusterID(), Current: a.keys.Current,
		Nodes:  func() []api.Node { return cl.Nodes(time.Now()) },
		Client: (&peers{a: a, cl: cl}).Client,
		Local:  s.Step, Event: a.con.Event, Logger: a.log,
	}
	a.rekey = s
	return api.RekeyRoutes(s)
}

// Rekey serves the API.
func (s *rekeyService) Rekey(ctx context.Context, req api.RekeyRequest) (api.RekeyResult, error) {
	return s.rot.Rekey(ctx, req)
}

// Remove serves the API.
func (s *rekeyService) Remove(ctx context.Context, req api.RemoveRequest) (api.RemoveResult, error) {
	return s.rot.Remove(ctx, req)
}

// Step takes one step of a rekey on this node: the keys its gossip, its
// API and its calls to other agents use, and the key file it keeps.
func (s *rekeyService) Step(ctx context.Context, st api.RekeyStep) (api.RekeyStepResult, error) {
	a := s.a
	if st.Cluster != a.keys.ClusterID() {
		return api.RekeyStepResult{}, fmt.Errorf("a rekey step for cluster %s, but %s is in cluster %s: %w", st.Cluster, a.node.Name, a.keys.ClusterID(), api.ErrBadRequest)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	mem := s.cl.cur.Load()
	if mem == nil && st.Step != api.RekeyRemoved {
		return api.RekeyStepResult{}, fmt.Errorf("%w", membership.ErrNotRunning)
	}
	k, dropped, err := enroll.StepRing(a.keys, st)
	if err != nil {
		return api.RekeyStepResult{}, err
	}
	switch st.Step {
	case api.RekeyInstall:
		if err := mem.InstallKey(k); err != nil {
			return api.RekeyStepResult{}, err
		}
	case api.RekeyUse:
		if err := mem.UseKey(k); err != nil {
			return api.RekeyStepResult{}, err
		}
		s.keep()
		a.con.Event("rekey: now using key %s (cluster %s; drift rekey from %s)", k.ID(), a.keys.ClusterID(), st.By)
	case api.RekeyDrop:
		var ids []string
		for _, old := range dropped {
			if err := mem.RemoveKey(old); err != nil {
				a.log.Warn("rekey: drop an old key from gossip", "key", old.ID(), "err", err)
			}
			ids = append(ids, old.ID())
		}
		if len(ids) > 0 {
			s.retire(ids)
			a.con.Event("rekey: key %s no longer accepted", strings.Join(ids, ","))
		}
	case api.RekeyRemoved:
		a.con.Event("rekey: removed from the cluster by drift remove on %s: the cluster moves to a new key without this node and refuses it from then on; to let it back, boot it from a medium made with the new key, or (network boot) drift admit %s on the head", st.By, a.node.Name)
	}
	res := api.RekeyStepResult{Node: a.node.Name}
	for _, k := range a.keys.Accepted() {
		res.KeyIDs = append(res.KeyIDs, k.ID())
	}
	return res, nil
}

// keep writes the key in use to the node's key file (so a restarted agent
// uses it) and, on a head with DRIFT-DATA, beside its enrolment decisions
// (so a rebooted head does).
func (s *rekeyService) keep() {
	a := s.a
	c := a.keys.Cluster()
	if err := clusterkey.WriteCluster(KeyFile, c); err != nil {
		a.log.Warn("rekey: keep the new key in "+KeyFile, "err", err)
	}
	if dir := a.keepDir(); dir != "" {
		if err := clusterkey.WriteCluster(filepath.Join(dir, keptKeyName), c); err != nil {
			a.con.Event("error rekey: keep the new key on DRIFT-DATA: %v (a head booted again from its medium would use the old key)", err)
		}
	}
}

// retire records on the head's DRIFT-DATA that rekeys retired ids.
func (s *rekeyService) retire(ids []string) {
	dir := s.a.keepDir()
	if dir == "" {
		return
	}
	f, err := os.OpenFile(filepath.Join(dir, retiredKeyName), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err == nil {
		_, err = fmt.Fprintln(f, strings.Join(ids, "\n"))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		s.a.log.Warn("rekey: record the retired keys on DRIFT-DATA", "err", err)
	}
}

// keepDir is where the head keeps its key on DRIFT-DATA; "": nowhere (a
// worker, or a head without the partition).
func (a *agent) keepDir() string {
	if a.enroll == nil {
		return ""
	}
	select {
	case <-a.enroll.ready:
		return a.enroll.dir
	default:
		return ""
	}
}

// adoptKeptKey runs on a head once its DRIFT-DATA is mounted: if its boot
// medium's key was retired by a rekey and the partition keeps the newer
// one, the head moves to that key (the rest of the cluster uses it).
func (a *agent) adoptKeptKey(ctx context.Context, dir string) {
	kept, ok, err := keptKey(dir, a.keys.Cluster())
	if err != nil {
		a.con.Event("error rekey: the key kept on DRIFT-DATA: %v", err)
	}
	if !ok {
		return
	}
	cur := a.keys.Current()
	a.con.Event("rekey: this head's boot medium carries key %s, which drift rekey retired: using key %s kept on DRIFT-DATA (make a new medium with the new key file)", cur.ID(), kept.Key.ID())
	if a.rekey == nil {
		return
	}
	for _, step := range []string{api.RekeyInstall, api.RekeyUse, api.RekeyDrop} {
		st := api.RekeyStep{Step: step, Key: kept.Key.Hex(), Cluster: kept.ID, By: a.node.Name + " (DRIFT-DATA)"}
		for {
			_, err := a.rekey.Step(ctx, st)
			if err == nil {
				break
			}
			if !errors.Is(err, membership.ErrNotRunning) || ctx.Err() != nil {
				a.con.Event("error rekey: use the key kept on DRIFT-DATA: %v", err)
				return
			}
			time.Sleep(time.Second) // membership is starting
		}
	}
}

// keptKey returns the key kept in dir if the head should use it rather
// than cur, the one its medium carries: same cluster, and cur retired by
// a rekey.
func keptKey(dir string, cur clusterkey.Cluster) (clusterkey.Cluster, bool, error) {
	kept, err := clusterkey.LoadCluster(filepath.Join(dir, keptKeyName))
	if errors.Is(err, os.ErrNotExist) {
		return kept, false, nil
	}
	if err != nil {
		return kept, false, err
	}
	ok := kept.ID == cur.ID && kept.Key != cur.Key && retired(filepath.Join(dir, retiredKeyName), cur.Key.ID())
	return kept, ok, nil
}

// retired reports whether the file at path lists id.
func retired(path, id string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	var ids []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ids = append(ids, strings.TrimSpace(sc.Text()))
	}
	return slices.Contains(ids, id)
}

// joinRefused tells the console, at most once a minute, that the peers
// discovery found (same cluster ID) did not let this node in: most often
// because the cluster was rekeyed after this node's medium was made.
func (a *agent) joinRefused(addrs []string, err error) {
	msg := err.Error()
	if strings.Contains(msg, "i/o timeout") || strings.Contains(msg, "connection refused") || strings.Contains(msg, "no route to host") {
		return // not there, rather than refusing
	}
	s := a.rekey
	if s == nil {
		return
	}
	s.mu.Lock()
	if time.Since(s.lastJoin) < time.Minute {
		s.mu.Unlock()
		return
	}
	s.lastJoin = time.Now()
	s.mu.Unlock()
	a.con.Event("error join refused: the nodes at %s (cluster %s) do not accept this node's key %s: the cluster was rekeyed (drift rekey) or this node was removed (drift remove). Boot it from a medium made with the cluster's new key file, or network-boot it from the head", strings.Join(addrs, ","), a.keys.ClusterID(), a.keys.Current().ID())
}
