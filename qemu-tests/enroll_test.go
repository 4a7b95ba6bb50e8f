package qemutests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
)

// pendingRE matches a network-booted machine's line saying it waits for
// the operator.
var pendingRE = regexp.MustCompile(`drift: enroll: pending: `)

// TestEnroll: a head with drift.enroll=MAC (node 2's) network-boots two
// diskless workers. Node 2 is admitted by the list and joins; node 3
// waits, shows as pending on the head and does not join until drift
// admit, then joins and runs a job. Meanwhile a machine on the segment
// that is not a member (the lab host) fetches everything the head serves
// over TFTP and HTTP: the cluster key is in none of it.
func TestEnroll(t *testing.T) {
	img := image(t)
	t.Parallel()
	key, err := clusterkey.LoadFile(filepath.Join(img.Dir, imagebuild.KeyName))
	if err != nil {
		t.Fatalf("the image's key: %v", err)
	}
	dir := pxeStateDir(t)
	listed, other := lab.NodeMAC(lab.LabID(dir), 2), lab.NodeMAC(lab.LabID(dir), 3)
	workers := []lab.PXEWorker{{NIC: lab.NICVirtio}, {NIC: lab.NICVirtio}}
	l := startPXELab(t, lab.PXEConfig{Config: lab.Config{Image: img, StateDir: dir}, Workers: workers,
		HeadArgs: []string{"drift.enroll=" + listed}})
	head, err := l.WaitFor(t.Context(), 1, regexp.MustCompile(`drift: enroll: serving mode=`+regexp.QuoteMeta(listed)))
	if err != nil {
		t.Fatalf("head's enrolment line: %v", err)
	}
	t.Logf("head: %s", head)

	t.Run("nothing served carries the key", func(t *testing.T) {
		r, _ := l.Ready(1)
		files := fetchServed(t, l, r.Addr)
		needles := map[string][]byte{
			"bytes":      key[:],
			"hex":        []byte(key.Hex()),
			"HEX":        []byte(strings.ToUpper(key.Hex())),
			"base64":     []byte(base64.StdEncoding.EncodeToString(key[:])),
			"base64 raw": []byte(base64.RawStdEncoding.EncodeToString(key[:])),
			"base64 url": []byte(base64.RawURLEncoding.EncodeToString(key[:])),
		}
		for name, body := range files {
			for what, n := range needles {
				if bytes.Contains(body, n) {
					t.Errorf("%s holds the cluster key's %s", name, what)
				}
			}
		}
		if len(files) < 5 {
			t.Errorf("fetched %d files, want the script, kernel, initramfs and its contents, and the iPXE binaries", len(files))
		}
	})

	ctx := waitContext(t, 12*time.Minute)
	r2, err := l.WaitReadyNode(ctx, 2)
	if err != nil {
		t.Fatalf("node 2 (%s, on the MAC list): %v", listed, err)
	}
	checkReady(t, l, img, r2, "worker")
	if _, err := l.WaitFor(ctx, 3, pendingRE); err != nil {
		t.Fatalf("node 3 (%s, not listed) never said it waits: %v", other, err)
	}
	name3 := lab.NodeHostname(other)

	t.Run("pending machine does not join", func(t *testing.T) {
		ctx := waitContext(t, 2*time.Minute)
		var e api.Enrolment
		res := execOK(ctx, t, l, 1, "drift", "pending", "--json")
		if err := json.Unmarshal(res.Stdout, &e); err != nil {
			t.Fatalf("drift pending --json: %v\n%s", err, res.Stdout)
		}
		states := map[string]string{}
		for _, m := range e.Machines {
			states[m.MAC] = m.State + " " + m.How
		}
		if states[other] != "pending " || states[listed] != "admitted drift.enroll MAC list" {
			t.Errorf("drift pending: %+v; want %s pending and %s admitted by the list", e, other, listed)
		}
		nodes := execOK(ctx, t, l, 1, "drift", "nodes")
		if !strings.Contains(string(nodes.Stdout), "pending (not members") || !strings.Contains(string(nodes.Stdout), name3+"  "+other) {
			t.Errorf("drift nodes does not show %s pending:\n%s", name3, nodes.Stdout)
		}
		if _, ok := l.Ready(3); ok {
			t.Errorf("node 3 printed its ready line before it was admitted")
		}
		var members []api.Node
		res = execOK(ctx, t, l, 1, "drift", "nodes", "--json")
		json.Unmarshal(res.Stdout, &members)
		for _, m := range members {
			if m.Name == name3 {
				t.Errorf("%s is a member before drift admit: %+v", name3, m)
			}
		}
	})

	t.Run("admitted machine joins and runs a job", func(t *testing.T) {
		ctx := waitContext(t, 6*time.Minute)
		res := execOK(ctx, t, l, 1, "drift", "admit", name3)
		t.Logf("drift admit: %s", res.Stdout)
		r3, err := l.WaitReadyNode(ctx, 3)
		if err != nil {
			t.Fatalf("node 3 after drift admit: %v", err)
		}
		checkReady(t, l, img, r3, "worker")
		for {
			out, err := l.ExecOK(ctx, 1, "drift", "run", "--node", name3, "--", "hostname")
			if err == nil && strings.TrimSpace(out) == name3 {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("drift run --node %s -- hostname: %q, %v", name3, out, err)
			case <-time.After(3 * time.Second):
			}
		}
	})

	t.Run("no exec port without drift.lab=1", func(t *testing.T) {
		ctx := waitContext(t, 5*time.Minute)
		n, err := l.Add(ctx, []string{"drift.lab=0"}) // a kernel boot with the key, as a real machine would have
		if err != nil {
			t.Fatalf("add a node without drift.lab=1: %v", err)
		}
		r, err := l.WaitReadyNode(ctx, n)
		if err != nil {
			t.Fatalf("node %d: %v", n, err)
		}
		checkReady(t, l, img, r, "worker")
		ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if res, err := labport.Exec(ectx, l.LabSock(n), labport.Request{Argv: []string{"true"}}); err == nil {
			t.Errorf("node %d booted without drift.lab=1 ran a command from its virtio-serial port: %+v", n, res)
		}
	})
}

// fetchServed fetches, from the lab host (on the segment, not a member),
// every file the head at addr serves: the boot script, kernel and
// initramfs over HTTP, and whatever TFTP gives of the names a PXE client
// might ask. The initramfs comes back decompressed, and each file in it
// on its own. It checks that the key's archive is served by neither.
func fetchServed(t *testing.T, l *lab.Lab, addr string) map[string][]byte {
	t.Helper()
	ctx := waitContext(t, 3*time.Minute)
	dir := t.TempDir()
	files := map[string][]byte{}
	get := func(url string) ([]byte, bool) {
		out := filepath.Join(dir, "f")
		os.Remove(out)
		cmd := l.Command(ctx, "curl", "-sf", "--max-time", "120", "-o", out, url)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Logf("curl %s: %v %s", url, err, b)
			return nil, false
		}
		b, err := os.ReadFile(out)
		return b, err == nil
	}
	script, ok := get("http://" + addr + "/boot.ipxe")
	if !ok {
		t.Fatalf("the head does not serve its boot script")
	}
	files["http boot.ipxe"] = script
	t.Logf("boot.ipxe:\n%s", script)
	if !regexp.MustCompile(`drift\.enroll_fp=[0-9a-f]{64}`).Match(script) || strings.Contains(string(script), "drift.key") {
		t.Errorf("boot.ipxe: want drift.enroll_fp and no drift.key")
	}
	var initramfs string
	for _, m := range regexp.MustCompile(`(?m)^(?:kernel|initrd) \$\{base\}/(\S+)`).FindAllSubmatch(script, -1) {
		name := string(m[1])
		b, ok := get("http://" + addr + "/" + name)
		if !ok {
			t.Errorf("the head does not serve %s, which its script names", name)
			continue
		}
		files["http "+name] = b
		if strings.HasPrefix(name, "initramfs") {
			initramfs = name
		}
	}
	for _, name := range []string{"undionly.kpxe", "ipxe.efi", "boot.ipxe", "vmlinuz", initramfs, imagebuild.KeyCPIOName, imagebuild.KeyName} {
		if b, ok := get("tftp://" + addr + "/" + name); ok {
			files["tftp "+name] = b
		}
	}
	for _, name := range []string{imagebuild.KeyCPIOName, imagebuild.KeyName, "etc/drift/cluster.key"} {
		if _, ok := get("http://" + addr + "/" + name); ok {
			t.Errorf("the head serves %s over HTTP", name)
		}
	}
	if _, ok := files["tftp "+imagebuild.KeyCPIOName]; ok {
		t.Errorf("the head serves %s over TFTP", imagebuild.KeyCPIOName)
	}
	rd := files["http "+initramfs]
	zr, err := zstd.NewReader(bytes.NewReader(rd))
	if err != nil {
		t.Fatalf("initramfs %s: %v", initramfs, err)
	}
	raw, err := io.ReadAll(zr)
	zr.Close()
	if err != nil {
		t.Fatalf("decompress %s: %v", initramfs, err)
	}
	files["initramfs decompressed"] = raw
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatalf("unpack %s: %v", initramfs, err)
	}
	n := 0
	for _, r := range recs {
		if r.Name == "etc/drift/cluster.key" {
			t.Errorf("the initramfs holds %s", r.Name)
		}
		if r.FileSize == 0 {
			continue
		}
		b := make([]byte, r.FileSize)
		if _, err := r.ReadAt(b, 0); err != nil && err != io.EOF {
			t.Fatalf("read %s from the initramfs: %v", r.Name, err)
		}
		files["initramfs:"+r.Name] = b
		n++
	}
	t.Logf("fetched %d files; the initramfs (%d MB decompressed) holds %d files", len(files)-n, len(raw)>>20, n)
	if n < 50 {
		t.Errorf("unpacked only %d files from the initramfs", n)
	}
	return files
}
