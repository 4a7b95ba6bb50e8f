package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
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

// serveStorageAgent runs an agent API with the storage routes on a unix
// socket in dir and on a free loopback TCP port, and returns both.
func serveStorageAgent(t *testing.T, dir string, key clusterkey.Key, cl api.Cluster, local func() api.StorageStatus) (sock string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &api.Server{Cluster: cl, Key: key, Logger: slog.New(slog.DiscardHandler),
		SocketPath: filepath.Join(dir, "api.sock"), TCPAddr: addr,
		Routes: api.StorageRoutes(cl, key, local)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	for range 200 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s.SocketPath, l.Addr().(*net.TCPAddr).Port
}

// TestStorage asks the head's agent, which asks the worker's over mutual
// TLS: the listing has both, the dead node marked, and the head's
// warning that its tmpfs is lost at power-off.
func TestStorage(t *testing.T) {
	key, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	since := time.Now().Add(-90 * time.Second)
	worker := api.StorageStatus{Mount: api.MountStatus{Target: "/cluster", Source: "9p://10.77.0.1:5640",
		FSType: "9p", Mounted: true, Healthy: true, Since: since, Total: 2 << 30, Free: 1 << 30}}
	_, workerPort := serveStorageAgent(t, t.TempDir(), key, fakeCluster{}, func() api.StorageStatus { return worker })

	head := api.StorageStatus{
		Mount: api.MountStatus{Target: "/cluster", Source: "9p://10.77.0.1:5640", FSType: "9p", Mounted: true,
			Healthy: false, Since: since, Error: "statfs /cluster: no answer from the storage server"},
		Export: &api.StorageExport{Backing: api.Backing{Dir: "/var/lib/drift/data", FSType: "tmpfs"},
			Port: 5640, Total: 2 << 30, Free: 1 << 30},
	}
	members := fakeCluster{
		{Name: "drift-000001", Addr: "10.77.0.1", State: membership.StateAlive, Self: true, Info: nodeinfo.Info{Role: "head"}},
		{Name: "drift-000003", Addr: "127.0.0.1", State: membership.StateAlive, Info: nodeinfo.Info{Role: "worker", APIPort: workerPort}},
		{Name: "drift-000002", Addr: "10.77.0.2", State: membership.StateDead, Info: nodeinfo.Info{Role: "worker"}},
	}
	sock, _ := serveStorageAgent(t, t.TempDir(), key, members, func() api.StorageStatus { return head })

	var out, errOut strings.Builder
	if err := runStorage(t.Context(), []string{"--socket", sock}, nil, &out, &errOut); err != nil {
		t.Fatalf("drift storage: %v", err)
	}
	text := out.String()
	t.Logf("drift storage:\n%s", text)
	for _, want := range []string{
		"NODE          ROLE    MOUNT     FROM                 HEALTH   SIZE  FREE  SINCE",
		"drift-000001  head    /cluster  9p://10.77.0.1:5640  stale    -     -     1m30s",
		"drift-000002  worker  /cluster  -                    unknown  -     -     -",
		"drift-000003  worker  /cluster  9p://10.77.0.1:5640  ok       2.0G  1.0G  1m30s",
		"drift-000001 exports /var/lib/drift/data on port 5640: tmpfs, 1.0G free of 2.0G",
		"WARNING: the shared storage is in memory (tmpfs): its data is lost when drift-000001 is switched off or rebooted.",
		"drift-000002: node is dead",
		"drift-000001: statfs /cluster: no answer from the storage server",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("drift storage output lacks %q", want)
		}
	}

	out.Reset()
	if err := runStorage(t.Context(), []string{"--json", "--socket", sock}, nil, &out, &errOut); err != nil {
		t.Fatalf("drift storage --json: %v", err)
	}
	var got []api.StorageStatus
	if err := json.Unmarshal([]byte(out.String()), &got); err != nil {
		t.Fatalf("drift storage --json: %v\n%s", err, out.String())
	}
	var names []string
	for _, s := range got {
		names = append(names, s.Node)
	}
	if diff := cmp.Diff([]string{"drift-000001", "drift-000002", "drift-000003"}, names); diff != "" {
		t.Errorf("--json nodes (-want +got):\n%s", diff)
	}
	if len(got) == 3 && (got[2].Mount.Source != worker.Mount.Source || got[2].Mount.Free != worker.Mount.Free || got[0].Export == nil) {
		t.Errorf("--json = %+v; want the worker's mount as it reported it and the head's export", got)
	}
}

func TestWriteStoragePersistentAndExternal(t *testing.T) {
	now := time.Now()
	nodes := []api.StorageStatus{
		{Node: "h", Role: "head", Mount: api.MountStatus{Target: "/cluster", Source: "9p://10.77.0.1:5640", Mounted: true, Healthy: true, Since: now.Add(-time.Hour)},
			Export: &api.StorageExport{Backing: api.Backing{Dir: "/var/lib/drift/data", FSType: "ext4", Device: "/dev/vdb", Label: "DRIFT-DATA", Persistent: true}, Port: 5640, Total: 1 << 30, Free: 512 << 20}},
		{Node: "w", Role: "worker", External: "nfs://10.0.0.2/srv", Mount: api.MountStatus{Target: "/cluster", Error: "mount nfs://10.0.0.2/srv on /cluster: connection refused"}},
	}
	var b strings.Builder
	if err := writeStorage(&b, nodes, now); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	if strings.Contains(text, "WARNING") {
		t.Errorf("a DRIFT-DATA backing store printed a data-loss warning:\n%s", text)
	}
	for _, want := range []string{"ext4 on /dev/vdb (label DRIFT-DATA), 512M free of 1.0G", "external storage: nfs://10.0.0.2/srv", "w: mount nfs://10.0.0.2/srv on /cluster: connection refused", "w     worker  /cluster  -"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
}
