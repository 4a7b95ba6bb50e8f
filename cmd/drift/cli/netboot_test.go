package cli

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/google/go-cmp/cmp"
)

func TestWriteNetboot(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	nb := api.Netboot{Mode: "proxy", Interface: "eth0", Addr: "192.168.1.20", ScriptURL: "http://192.168.1.20/boot.ipxe",
		Medium: "/dev/sr0", Version: "v0.4", TFTPDir: "/run/drift/medium/pxe", TFTPBytes: 850528, HTTPBytes: 29 << 20,
		Machines: []api.NetbootMachine{
			{MAC: "52:54:00:d1:00:02", Arch: "bios", Addr: "192.168.1.31", Node: "drift-d10002", Stage: "joined", At: now.Add(-40 * time.Second)},
			{MAC: "52:54:00:d1:00:04", Arch: "uefi-x64", Addr: "192.168.1.33", Node: "drift-d10004", Stage: "ipxe-binary", At: now.Add(-75 * time.Second)},
		}}
	const want = `dhcp=proxy on eth0 (192.168.1.20), script http://192.168.1.20/boot.ipxe
image from /dev/sr0 (drift v0.4), iPXE binaries from /run/drift/medium/pxe
served 831K over TFTP, 29M over HTTP

MAC                ARCH      ADDR          NODE          STAGE        WHEN
52:54:00:d1:00:02  bios      192.168.1.31  drift-d10002  joined       40s ago
52:54:00:d1:00:04  uefi-x64  192.168.1.33  drift-d10004  ipxe-binary  1m15s ago
`
	var b strings.Builder
	if err := writeNetboot(&b, nb, now); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("writeNetboot() mismatch (-want +got):\n%s", diff)
	}
	b.Reset()
	writeNetboot(&b, api.Netboot{Mode: "server", Error: "netboot: no boot medium"}, now)
	if got := b.String(); !strings.HasPrefix(got, "not serving: netboot: no boot medium\n") || !strings.Contains(got, "no machine has network-booted") {
		t.Errorf("writeNetboot() with an error = %q", got)
	}
}

// drift netboot against a real API server: the head's table and JSON,
// and a worker's refusal.
func TestRunNetboot(t *testing.T) {
	key, _ := clusterkey.Generate()
	nb := api.Netboot{Mode: "server", Interface: "eth0", Addr: "10.77.0.1", Machines: []api.NetbootMachine{
		{MAC: "52:54:00:d1:00:02", Arch: "bios", Stage: "kernel", At: time.Now().Add(-time.Second)}}}
	for _, tt := range []struct {
		name    string
		routes  map[string]http.Handler
		args    []string
		want    string
		wantErr string
	}{
		{"head", api.NetbootRoutes(func() api.Netboot { return nb }), nil, "52:54:00:d1:00:02  bios  -     -     kernel", ""},
		{"head json", api.NetbootRoutes(func() api.Netboot { return nb }), []string{"--json"}, `"stage": "kernel"`, ""},
		{"worker", api.NetbootRoutes(nil), nil, "", "this node is not a head"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "api.sock")
			s := &api.Server{Key: key, Cluster: fakeCluster{}, SocketPath: sock, TCPAddr: "-", Logger: slog.New(slog.DiscardHandler), Routes: tt.routes}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			defer func() { cancel(); <-done }()
			var out, errb strings.Builder
			var err error
			for range 100 { // until the socket is up
				out.Reset()
				if err = runNetboot(ctx, append([]string{"--socket", sock}, tt.args...), nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "no drift agent") {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("drift netboot = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("drift netboot: %v", err)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Errorf("drift netboot %v printed:\n%s\nwant it to contain %q", tt.args, out.String(), tt.want)
			}
			if len(tt.args) > 0 {
				var got api.Netboot
				if err := json.Unmarshal([]byte(out.String()), &got); err != nil || got.Machines[0].MAC != "52:54:00:d1:00:02" {
					t.Errorf("--json output %q does not decode to the head's list: %v", out.String(), err)
				}
			}
		})
	}
}
