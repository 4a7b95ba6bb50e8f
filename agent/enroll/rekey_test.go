package enroll

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// rekeyNode is one agent of a loopback cluster: its real API server on
// TCP (mutual TLS with the keys of its ring) and its part of rekeys,
// which changes the ring as the agent's does (gossip's keyring is
// TestRotateKey's in agent/membership).
type rekeyNode struct {
	name  string
	addr  string
	keys  *clusterkey.Ring
	rot   *Rotation
	steps []string
	mu    sync.Mutex
}

func (n *rekeyNode) Rekey(ctx context.Context, r api.RekeyRequest) (api.RekeyResult, error) {
	return n.rot.Rekey(ctx, r)
}
func (n *rekeyNode) Remove(ctx context.Context, r api.RemoveRequest) (api.RemoveResult, error) {
	return n.rot.Remove(ctx, r)
}
func (n *rekeyNode) Step(ctx context.Context, st api.RekeyStep) (api.RekeyStepResult, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.steps = append(n.steps, st.Step)
	if _, _, err := StepRing(n.keys, st); err != nil {
		return api.RekeyStepResult{}, err
	}
	return api.RekeyStepResult{Node: n.name}, nil
}

type rekeyCluster struct {
	nodes []*rekeyNode
	down  map[string]bool
	jobs  map[string]int
}

func (c *rekeyCluster) list(self string) []api.Node {
	var out []api.Node
	for _, n := range c.nodes {
		host, port, _ := net.SplitHostPort(n.addr)
		p, _ := strconv.Atoi(port)
		st := api.NodeAlive
		if c.down[n.name] {
			st = api.NodeDead
		}
		out = append(out, api.Node{Name: n.name, Addr: host, APIPort: p, State: st, Self: n.name == self, Jobs: c.jobs[n.name]})
	}
	return out
}

func (c *rekeyCluster) Nodes(time.Time) []api.Node { return c.list("") }

func startRekeyCluster(t *testing.T, first clusterkey.Key, names ...string) *rekeyCluster {
	t.Helper()
	c := &rekeyCluster{down: map[string]bool{}, jobs: map[string]int{}}
	for _, name := range names {
		n := &rekeyNode{name: name, keys: clusterkey.NewRing(clusterkey.Of(first))}
		n.rot = &Rotation{Self: name, ClusterID: first.ID(), Current: n.keys.Current, Local: n.Step,
			Nodes: func() []api.Node { return c.list(name) }, Logger: slog.New(slog.DiscardHandler), StepTimeout: 3 * time.Second,
			Client: func(node string) (*api.Client, error) {
				for _, o := range c.nodes {
					if o.name == node {
						return api.Remote(o.addr, n.keys.Current())
					}
				}
				return nil, fmt.Errorf("no node %s", node)
			}}
		s := &api.Server{Cluster: c, Keys: n.keys, Logger: slog.New(slog.DiscardHandler), Routes: api.RekeyRoutes(n),
			SocketPath: filepath.Join(t.TempDir(), "api.sock"), TCPAddr: "127.0.0.1:0"}
		ls, err := s.Listen()
		if err != nil {
			t.Fatal(err)
		}
		n.addr = ls.TCP.Addr().String()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.ServeListeners(ctx, ls) }()
		t.Cleanup(func() { cancel(); <-done })
		c.nodes = append(c.nodes, n)
	}
	return c
}

// opens reports whether a client holding k is answered by n.
func opens(t *testing.T, n *rekeyNode, k clusterkey.Key) bool {
	t.Helper()
	c, err := api.Remote(n.addr, k)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Nodes(context.Background())
	if err != nil && !errors.As(err, new(*api.RefusedError)) {
		t.Fatalf("Nodes from %s with key %s = %v, want an answer or a RefusedError", n.name, k.ID(), err)
	}
	return err == nil
}

// TestRekey: drift rekey asked of one agent moves every agent to a new
// key over the real API (mutual TLS, which accepts both keys while the
// change spreads); the old key then opens no agent, a node that was down
// is reported, and drift remove leaves a node out so that its key stops
// working too.
func TestRekey(t *testing.T) {
	old, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c := startRekeyCluster(t, old, "drift-a", "drift-b", "drift-c", "drift-d")
	a, b, cc, d := c.nodes[0], c.nodes[1], c.nodes[2], c.nodes[3]
	c.down["drift-d"] = true
	cli, err := api.Remote(b.addr, old) // a host's drift, talking to b
	if err != nil {
		t.Fatal(err)
	}
	res, err := cli.Rekey(context.Background(), api.RekeyRequest{})
	if err != nil {
		t.Fatalf("Rekey = %v", err)
	}
	next, err := clusterkey.Parse([]byte(res.Key))
	if err != nil {
		t.Fatalf("Rekey's key %q: %v", res.Key, err)
	}
	if res.ClusterID != old.ID() || res.OldKeyID != old.ID() || res.KeyID != next.ID() || next == old {
		t.Errorf("Rekey = %+v: want the cluster's ID kept and a new key", res)
	}
	if want := []string{"drift-a", "drift-b", "drift-c"}; !slices.Equal(res.Took, want) || len(res.Missed) != 1 || res.Missed[0].Node != "drift-d" {
		t.Errorf("Rekey took %v, missed %+v; want %v, and drift-d missed", res.Took, res.Missed, want)
	}
	for _, n := range []*rekeyNode{a, b, cc} {
		if n.keys.Current() != next || len(n.keys.Accepted()) != 1 || n.keys.ClusterID() != old.ID() {
			t.Errorf("%s after the rekey: key %s, accepts %d keys, cluster %s", n.name, n.keys.Current().ID(), len(n.keys.Accepted()), n.keys.ClusterID())
		}
		if want := []string{api.RekeyInstall, api.RekeyUse, api.RekeyDrop}; !slices.Equal(n.steps, want) {
			t.Errorf("%s took steps %v, want %v", n.name, n.steps, want)
		}
		if opens(t, n, old) {
			t.Errorf("the old key still opens %s", n.name)
		}
		if !opens(t, n, next) {
			t.Errorf("the new key does not open %s", n.name)
		}
	}
	if d.keys.Current() != old || len(d.steps) != 0 {
		t.Errorf("drift-d, down, was sent %v", d.steps)
	}
	// The connection the host's client opened with the old key is
	// refused its next request too.
	if _, err := cli.Nodes(context.Background()); err == nil {
		t.Errorf("a client holding the old key still gets answers")
	}

	// drift remove drift-c, asked of drift-a with the new key.
	cli, _ = api.Remote(a.addr, next)
	c.jobs["drift-c"] = 2
	if _, err := cli.Remove(context.Background(), api.RemoveRequest{Node: "drift-c"}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("Remove of a node that runs jobs = %v, want ErrConflict (drain it first)", err)
	}
	for _, tt := range []struct{ node, want string }{{"drift-a", "ask another node"}, {"drift-x", "no node drift-x"}} {
		if _, err := cli.Remove(context.Background(), api.RemoveRequest{Node: tt.node}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Remove(%s) = %v, want an error saying %q", tt.node, err, tt.want)
		}
	}
	rm, err := cli.Remove(context.Background(), api.RemoveRequest{Node: "drift-c", Force: true})
	if err != nil {
		t.Fatalf("Remove --force = %v", err)
	}
	third, _ := clusterkey.Parse([]byte(rm.Rekey.Key))
	if !slices.Equal(rm.Rekey.Took, []string{"drift-a", "drift-b"}) || !strings.Contains(rm.Enrolment, "no head") {
		t.Errorf("Remove = %+v; want drift-a and drift-b on the new key, and no head to tell", rm)
	}
	if cc.keys.Current() != next || cc.steps[len(cc.steps)-1] != api.RekeyRemoved {
		t.Errorf("drift-c after its removal: key %s, steps %v; want the key it had, told it was removed", cc.keys.Current().ID(), cc.steps)
	}
	if opens(t, a, next) || opens(t, b, next) || !opens(t, a, third) {
		t.Errorf("after drift remove, the removed node's key still opens the others, or the new one does not")
	}
}
