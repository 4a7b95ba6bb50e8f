package cli

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/enroll"
)

// oneNodeRekey is a one-node cluster's rekey: enroll.Rotation over the
// ring the agent's API serves with (the steps change the ring as the
// agent's do), and a second member that is down.
type oneNodeRekey struct {
	rot  *enroll.Rotation
	keys *clusterkey.Ring
}

func (o *oneNodeRekey) Rekey(ctx context.Context, r api.RekeyRequest) (api.RekeyResult, error) {
	return o.rot.Rekey(ctx, r)
}
func (o *oneNodeRekey) Remove(ctx context.Context, r api.RemoveRequest) (api.RemoveResult, error) {
	return o.rot.Remove(ctx, r)
}
func (o *oneNodeRekey) Step(ctx context.Context, st api.RekeyStep) (api.RekeyStepResult, error) {
	if _, _, err := enroll.StepRing(o.keys, st); err != nil {
		return api.RekeyStepResult{}, err
	}
	return api.RekeyStepResult{Node: "drift-self"}, nil
}

// TestRekeyCLI: drift rekey from a host refuses to start without --out
// (the old key file would lock it out) or with an --out it cannot write,
// and otherwise writes the new key file, which opens the agent while the
// old one no longer does, and names the node that did not take the key.
func TestRekeyCLI(t *testing.T) {
	old, _ := clusterkey.Generate()
	keys := clusterkey.NewRing(clusterkey.Of(old))
	svc := &oneNodeRekey{keys: keys}
	var port int
	svc.rot = &enroll.Rotation{Self: "drift-self", ClusterID: old.ID(), Current: keys.Current, Local: svc.Step,
		Logger: slog.New(slog.DiscardHandler),
		Nodes: func() []api.Node {
			return []api.Node{{Name: "drift-self", Addr: "127.0.0.1", APIPort: port, State: api.NodeAlive, Self: true},
				{Name: "drift-off", Addr: "127.0.0.1", State: api.NodeDead}}
		},
		Client: func(string) (*api.Client, error) { return nil, errors.New("not reached") }}
	s := &api.Server{Keys: keys, Logger: slog.New(slog.DiscardHandler), Cluster: fakeCluster{},
		SocketPath: filepath.Join(t.TempDir(), "api.sock"), TCPAddr: "127.0.0.1:0", Routes: api.RekeyRoutes(svc)}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := ls.TCP.Addr().String()
	_, p, _ := net.SplitHostPort(addr)
	port, _ = strconv.Atoi(p)

	dir := t.TempDir()
	oldFile, newFile := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	clusterkey.WriteFile(oldFile, old)
	run := func(f func(context.Context, []string, io.Reader, io.Writer, io.Writer) error, args ...string) (string, error) {
		var out, errOut strings.Builder
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		err := f(ctx, args, strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	remote := []string{"--cluster", addr, "--key-file", oldFile}
	if out, err := run(runRekey, remote...); !errors.Is(err, errUsage) || !strings.Contains(err.Error(), "--out FILE is needed") {
		t.Errorf("drift rekey --cluster without --out = %v (%s), want a usage error asking for --out", err, out)
	}
	if out, err := run(runRekey, append(remote, "--out", filepath.Join(dir, "no", "such", "dir", "k"))...); err == nil || !strings.Contains(err.Error(), "cannot write there") {
		t.Errorf("drift rekey --out into a missing directory = %v (%s), want it refused before anything changes", err, out)
	}
	if keys.Current() != old {
		t.Fatalf("a refused drift rekey changed the key")
	}
	out, err := run(runRekey, append(remote, "--out", newFile)...)
	var ee exitError
	if !errors.As(err, &ee) || ee.code != 3 {
		t.Errorf("drift rekey with a node down = %v, want exit status 3", err)
	}
	next, lerr := clusterkey.LoadCluster(newFile)
	if lerr != nil || next.ID != old.ID() || next.Key != keys.Current() || next.Key == old {
		t.Fatalf("drift rekey wrote %v, %v; want the cluster %s with the agent's new key\n%s", next, lerr, old.ID(), out)
	}
	if st, _ := os.Stat(newFile); st.Mode().Perm() != 0o600 {
		t.Errorf("new key file mode %o, want 600", st.Mode().Perm())
	}
	for _, want := range []string{"key " + old.ID() + " replaced by key " + next.Key.ID(), "took the new key (1): drift-self", "did not take it (1)", "drift-off  down", "make image KEY_FILE=" + newFile} {
		if !strings.Contains(out, want) {
			t.Errorf("drift rekey printed:\n%s\nwant %q", out, want)
		}
	}
	if strings.Contains(out, next.Key.Hex()) {
		t.Errorf("drift rekey printed the new key")
	}
	if _, err := run(runNodes, remote...); !errors.As(err, new(*api.RefusedError)) {
		t.Errorf("drift nodes with the old key after the rekey = %v, want it refused", err)
	}
	if out, err := run(runNodes, "--cluster", addr, "--key-file", newFile); err != nil {
		t.Errorf("drift nodes with the new key file = %v: %s", err, out)
	}
	if out, err := run(runRemove, "--cluster", addr, "--key-file", newFile, "--out", newFile); !errors.Is(err, errUsage) {
		t.Errorf("drift remove without a node = %v (%s), want a usage error", err, out)
	}
	if out, err := run(runRemove, "drift-nope", "--cluster", addr, "--key-file", newFile, "--out", newFile); err == nil || !strings.Contains(err.Error(), "no node drift-nope") {
		t.Errorf("drift remove of an unknown node = %v (%s), want it named", err, out)
	}
}
