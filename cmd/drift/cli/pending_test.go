package cli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/enroll"
)

// TestPendingAdmitReject drives a real enrolment head through the API
// with drift pending, drift nodes, drift admit and drift reject, while a
// real machine asks for the key.
func TestPendingAdmitReject(t *testing.T) {
	key, _ := clusterkey.Generate()
	id, err := enroll.NewIdentity("head")
	if err != nil {
		t.Fatal(err)
	}
	head, err := enroll.NewHead(enroll.HeadConfig{Identity: id, Key: func() clusterkey.Key { return key },
		NodeName: boot.NodeName, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	el, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go head.Serve(ctx, el)
	sock := filepath.Join(t.TempDir(), "api.sock")
	s := &api.Server{Key: key, Logger: slog.New(slog.DiscardHandler), Cluster: fakeCluster{}, SocketPath: sock,
		TCPAddr: "127.0.0.1:0", Routes: api.EnrollRoutes(head)}
	go s.Run(ctx)

	asked := make(chan clusterkey.Key, 1)
	go func() {
		k, _ := enroll.Ask(ctx, enroll.AskConfig{Head: el.Addr().String(), Fingerprint: head.Fingerprint(),
			MAC: "52:54:00:0a:0b:0c", Node: "drift-0a0b0c", Interval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		asked <- k
	}()
	run := func(f func(context.Context, []string, io.Reader, io.Writer, io.Writer) error, args ...string) (string, error) {
		var out, errOut strings.Builder
		err := f(context.Background(), append(args, "--socket", sock), strings.NewReader(""), &out, &errOut)
		return out.String() + errOut.String(), err
	}
	var out string
	for range 100 {
		out, err = run(runPending)
		if err == nil && strings.Contains(out, "drift-0a0b0c") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out, "enrolment mode approve") || !strings.Contains(out, "drift-0a0b0c  52:54:00:0a:0b:0c  127.0.0.1  pending") || !strings.Contains(out, "1 pending: `drift admit NODE`") {
		t.Fatalf("drift pending = %v:\n%s", err, out)
	}
	if out, err := run(runNodes); err != nil || !strings.Contains(out, "pending (not members") || !strings.Contains(out, "drift-0a0b0c  52:54:00:0a:0b:0c") {
		t.Errorf("drift nodes = %v:\n%s\nwant the pending machine under the table", err, out)
	}
	if out, err := run(runAdmit, "drift-ffffff"); err == nil || !strings.Contains(err.Error(), "no machine named drift-ffffff has asked to join (drift pending lists them)") {
		t.Errorf("drift admit of an unknown machine = %v (%s), want an error that says so", err, out)
	}
	if out, err := run(runAdmit); err == nil || !strings.Contains(err.Error(), "want one node name") {
		t.Errorf("drift admit without an argument = %v (%s)", err, out)
	}
	if out, err := run(runAdmit, "all"); err != nil || !strings.Contains(out, "admitted drift-0a0b0c (52:54:00:0a:0b:0c)") {
		t.Fatalf("drift admit all = %v:\n%s", err, out)
	}
	select {
	case k := <-asked:
		if k != key {
			t.Errorf("the machine got %v, want the cluster key", k)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the machine did not get the key within 10s of drift admit")
	}
	if out, err := run(runReject, "52:54:00:0A:0B:0C"); err != nil || !strings.Contains(out, "refused drift-0a0b0c") {
		t.Errorf("drift reject MAC = %v:\n%s", err, out)
	}
	if out, _ := run(runPending); !strings.Contains(out, "refused  drift reject") {
		t.Errorf("drift pending after reject:\n%s", out)
	}
}
