package cli

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/membership"
	"github.com/driftcluster/drift/agent/nodeinfo"
	"github.com/google/go-cmp/cmp"
)

type fakeCluster []membership.Member

func (f fakeCluster) Nodes(now time.Time) []api.Node { return membership.APINodes(f, now) }

// startAgentAPI serves a fake two-node cluster on a unix socket and on TCP
// loopback, and returns the socket path, the TCP address and a key file.
func startAgentAPI(t *testing.T) (sock, tcpAddr, keyFile string) {
	t.Helper()
	key, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile = filepath.Join(dir, "cluster.key")
	if err := clusterkey.WriteFile(keyFile, key); err != nil {
		t.Fatal(err)
	}
	boot := time.Now().Add(-3 * time.Hour)
	s := &api.Server{Key: key, Logger: slog.New(slog.DiscardHandler), Cluster: fakeCluster{
		{Name: "drift-a1b2c3", Addr: "10.77.0.1", Port: 7946, State: membership.StateAlive, Self: true,
			Info: nodeinfo.Info{Cores: 4, CPUModel: "AMD EPYC", MHz: 2596, Speed: 1.02, MemTotal: 8 << 30, MemFree: 6 << 30,
				Runnable: 2, Load1: 0.5, Jobs: 1, Role: "head", Version: "v1", BootTime: boot, APIPort: 7947}},
		{Name: "drift-d4e5f6", Addr: "10.77.0.2", Port: 7946, State: membership.StateDead, Since: time.Now().Add(-2 * time.Minute),
			Info: nodeinfo.Info{Cores: 2, MemFree: 512 << 20, Role: "worker", Version: "v1", BootTime: boot}},
	}}
	// Run binds the port itself: find a free one first.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.SocketPath, s.TCPAddr = filepath.Join(dir, "api.sock"), l.Addr().String()
	l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 100 {
		if c, err := net.Dial("tcp", s.TCPAddr); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.SocketPath, s.TCPAddr, keyFile
}

func TestNodesAndStatus(t *testing.T) {
	sock, tcpAddr, keyFile := startAgentAPI(t)
	wrongKey := filepath.Join(t.TempDir(), "wrong.key")
	k, _ := clusterkey.Generate()
	clusterkey.WriteFile(wrongKey, k)
	const wantTable = `NAME           ADDR       ROLE    CPUS  SPEED  LOAD  MEM-FREE  JOBS  STATE  AGE
drift-a1b2c3*  10.77.0.1  head    4     1.02   0.50  6.0G      1     alive  3h0m
drift-d4e5f6   10.77.0.2  worker  2     0.00   0.00  512M      0     dead   2m0s
`
	tests := []struct {
		name    string
		run     func(context.Context, []string, *strings.Reader, *strings.Builder, *strings.Builder) error
		args    []string
		env     map[string]string
		want    string // exact stdout, or a substring for status
		wantErr string
	}{
		{"nodes via socket", nodesCmd, []string{"--socket", sock}, nil, wantTable, ""},
		{"nodes via tcp", nodesCmd, []string{"--cluster", tcpAddr, "--key-file", keyFile}, nil, wantTable, ""},
		{"nodes via env", nodesCmd, nil, map[string]string{"DRIFT_CLUSTER": tcpAddr, "DRIFT_KEY_FILE": keyFile}, wantTable, ""},
		{"nodes wrong key", nodesCmd, []string{"--cluster", tcpAddr, "--key-file", wrongKey}, nil, "",
			"the cluster at " + tcpAddr + " refused this key: check --key-file"},
		{"nodes no agent", nodesCmd, []string{"--socket", filepath.Join(t.TempDir(), "none.sock")}, nil, "",
			"no drift agent on this machine: use --cluster ADDR --key-file F from a host, or run on a node"},
		{"cluster without key", nodesCmd, []string{"--cluster", tcpAddr}, nil, "", "needs --key-file"},
		{"status", statusCmd, []string{"--socket", sock}, nil, "node:    drift-a1b2c3\n", ""},
		{"status members", statusCmd, []string{"--cluster", tcpAddr, "--key-file", keyFile}, nil, "members: 1 alive, 0 suspect, 1 dead\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("DRIFT_CLUSTER", tt.env["DRIFT_CLUSTER"])
			t.Setenv("DRIFT_KEY_FILE", tt.env["DRIFT_KEY_FILE"])
			var out, errOut strings.Builder
			err := tt.run(context.Background(), tt.args, strings.NewReader(""), &out, &errOut)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("run(%q) = %v, want error containing %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run(%q) = %v; stderr %s", tt.args, err, errOut.String())
			}
			got := out.String()
			if strings.HasPrefix(tt.want, "NAME") {
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("run(%q) table mismatch (-want +got):\n%s", tt.args, diff)
				}
			} else if !strings.Contains(got, tt.want) {
				t.Errorf("run(%q) = %q, want it to contain %q", tt.args, got, tt.want)
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		var out, errOut strings.Builder
		if err := runNodes(context.Background(), []string{"--json", "--socket", sock}, nil, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		var nodes []api.Node
		if err := json.Unmarshal([]byte(out.String()), &nodes); err != nil || len(nodes) != 2 || nodes[0].Name != "drift-a1b2c3" {
			t.Errorf("drift nodes --json = %q (%v), want 2 nodes", out.String(), err)
		}
		out.Reset()
		if err := runStatus(context.Background(), []string{"--json", "--socket", sock}, nil, &out, &errOut); err != nil {
			t.Fatal(err)
		}
		var st api.Status
		if err := json.Unmarshal([]byte(out.String()), &st); err != nil || st.Node.Name != "drift-a1b2c3" || st.Node.CPUs != 4 {
			t.Errorf("drift status --json = %q (%v), want drift-a1b2c3 with 4 cpus", out.String(), err)
		}
	})

	t.Run("usage error", func(t *testing.T) {
		err := runNodes(context.Background(), []string{"--cluster", tcpAddr}, nil, &strings.Builder{}, &strings.Builder{})
		if !errors.Is(err, errUsage) {
			t.Errorf("--cluster without --key-file = %v, want errUsage", err)
		}
	})
}

func nodesCmd(ctx context.Context, args []string, in *strings.Reader, out, errOut *strings.Builder) error {
	return runNodes(ctx, args, in, out, errOut)
}

func statusCmd(ctx context.Context, args []string, in *strings.Reader, out, errOut *strings.Builder) error {
	return runStatus(ctx, args, in, out, errOut)
}

func TestHoistGlobalFlags(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"nodes --json", "nodes --json"},
		{"--cluster 10.0.0.1 --key-file k nodes --json", "nodes --cluster 10.0.0.1 --key-file k --json"},
		{"--cluster=10.0.0.1 -key-file=k status", "status --cluster=10.0.0.1 -key-file=k"},
		{"--cluster 10.0.0.1", "--cluster 10.0.0.1"},
		{"--json nodes", "--json nodes"},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := strings.Join(hoistGlobalFlags(strings.Fields(tt.in)), " ")
			if got != tt.want {
				t.Errorf("hoistGlobalFlags(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestHuman(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{humanBytes(0), "0B"},
		{humanBytes(1023), "1023B"},
		{humanBytes(1536), "1.5K"},
		{humanBytes(512 << 20), "512M"},
		{humanBytes(6 << 30), "6.0G"},
		{humanBytes(1<<64 - 1), "16E"},
		{humanDuration(0), "-"},
		{humanDuration(45 * time.Second), "45s"},
		{humanDuration(12*time.Minute + 3*time.Second), "12m3s"},
		{humanDuration(5*time.Hour + 12*time.Minute), "5h12m"},
		{humanDuration(76 * time.Hour), "3d4h"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

// drift nodes says under its table when automatic balancing is off, and
// nothing when it is on.
func TestNodesSaysBalancingOff(t *testing.T) {
	for _, on := range []bool{true, false} {
		dir := t.TempDir()
		s := &api.Server{Logger: slog.New(slog.DiscardHandler), SocketPath: filepath.Join(dir, "api.sock"), Cluster: fakeCluster{
			{Name: "drift-a1b2c3", Addr: "10.77.0.1", State: membership.StateAlive, Self: true, Info: nodeinfo.Info{Cores: 1, Role: "head"}},
		}, Routes: map[string]http.Handler{"GET /v1/balance": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			api.WriteJSON(w, api.BalanceState{On: on})
		})}}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		for range 100 {
			if c, err := net.Dial("unix", s.SocketPath); err == nil {
				c.Close()
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		var out, errOut strings.Builder
		err := runNodes(ctx, []string{"--socket", s.SocketPath}, nil, &out, &errOut)
		cancel()
		<-done
		if err != nil {
			t.Fatalf("drift nodes: %v; stderr %s", err, errOut.String())
		}
		said := strings.Contains(out.String(), "automatic balancing is off: running jobs stay where they are (drift balance on)")
		if said == on {
			t.Errorf("balancing on=%v: drift nodes printed\n%s", on, out.String())
		}
	}
}

// drift logs given a job id, not a node name: the error says where a
// job's output is. A node's name that the cluster does not know gets no
// such line.
func TestLogsOfAJob(t *testing.T) {
	sock, _, _ := startAgentAPI(t)
	for _, tt := range []struct {
		arg  string
		hint bool
	}{{"d1dd01-1", true}, {"drift-zzzzzz", false}} {
		var out, errOut strings.Builder
		err := runLogs(context.Background(), []string{"--socket", sock, tt.arg}, strings.NewReader(""), &out, &errOut)
		if err == nil {
			t.Fatalf("drift logs %s: no error", tt.arg)
		}
		want := tt.arg + " looks like a job: drift logs prints a node's agent log; drift attach " + tt.arg + " prints the job's output"
		if got := strings.Contains(err.Error(), want); got != tt.hint {
			t.Errorf("drift logs %s = %v; want the hint %q: %v", tt.arg, err, want, tt.hint)
		}
	}
}
