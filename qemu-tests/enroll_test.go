package qemutests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
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
// over TFTP and HTTP: the cluster key is in none of it. Then drift rekey
// moves the cluster to a new key while a job runs (the job goes on, the
// old key opens nothing, a node booted again with the old key is
// refused), and drift remove makes node 3's credentials useless (booted
// again, it is refused by enrolment and stays out).
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

	var medium lab.Ready // node 4: booted from the image with its key, as a machine from the ISO
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
		medium = r
		ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
		defer cancel()
		if res, err := labport.Exec(ectx, l.LabSock(n), labport.Request{Argv: []string{"true"}}); err == nil {
			t.Errorf("node %d booted without drift.lab=1 ran a command from its virtio-serial port: %+v", n, res)
		}
	})
	if medium.Node == 0 {
		t.Fatalf("no node booted from the image's key: the rekey steps need it")
	}
	name2, _ := l.Ready(2)
	rekeyChecks(t, l, key, []string{readyName(t, l, 1), name2.Name, name3, medium.Name}, medium)
}

func readyName(t *testing.T, l *lab.Lab, n int) string {
	t.Helper()
	r, ok := l.Ready(n)
	if !ok {
		t.Fatalf("node %d is not ready", n)
	}
	return r.Name
}

// rekeyChecks: drift rekey and drift remove on the enrolment lab, whose
// nodes are names (1: the head, 2 and 3: network-booted, medium: booted
// from the image, with key old).
func rekeyChecks(t *testing.T, l *lab.Lab, old clusterkey.Key, names []string, medium lab.Ready) {
	drift := buildDrift(t)
	head, _ := l.Ready(1)
	dir := t.TempDir()
	oldFile, newFile := filepath.Join(dir, "old.key"), filepath.Join(dir, "new.key")
	if err := clusterkey.WriteFile(oldFile, old); err != nil {
		t.Fatal(err)
	}
	var next clusterkey.Cluster

	t.Run("rekey: jobs go on, the old key opens nothing", func(t *testing.T) {
		ctx := waitContext(t, 6*time.Minute)
		// A job homed on node 2, running on node 3: its terminal crosses
		// the cluster while the key changes.
		job := strings.TrimSpace(string(execOK(ctx, t, l, 2, "drift", "run", "-d", "--node", names[2], "--name", "through-rekey", "--", "sh", "-c",
			"i=1; while [ $i -le 40 ]; do echo $i; i=$((i+1)); sleep 1; done; exit 7").Stdout))
		time.Sleep(3 * time.Second)
		cmd := l.Command(ctx, drift, "--cluster", head.Addr, "--key-file", oldFile, "rekey", "--out", newFile, "--json")
		var stderr strings.Builder
		cmd.Stderr = &stderr
		start := time.Now()
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("drift rekey from the host: %v\n%s%s", err, out, stderr.String())
		}
		t.Logf("drift rekey took %s: %s", time.Since(start).Round(time.Millisecond), out)
		var res api.RekeyResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("drift rekey --json: %v", err)
		}
		if next, err = clusterkey.LoadCluster(newFile); err != nil {
			t.Fatalf("the key drift rekey wrote: %v", err)
		}
		if next.ID != old.ID() || next.Key == old || next.Key.ID() != res.KeyID || res.Key != "" {
			t.Errorf("drift rekey wrote %v (answer %+v); want the cluster %s on a new key, and no key on stdout", next, res, old.ID())
		}
		slices.Sort(res.Took)
		want := slices.Clone(names)
		slices.Sort(want)
		if !slices.Equal(res.Took, want) || len(res.Missed) != 0 {
			t.Errorf("drift rekey: took %v, missed %+v; want every node %v", res.Took, res.Missed, want)
		}
		// The old key opens no node; the new one opens each, which uses it.
		for _, r := range []string{head.Addr, medium.Addr} {
			if _, err := hostNodes(ctx, l, drift, r, oldFile); err == nil || !strings.Contains(err.Error(), "refused this key") {
				t.Errorf("the old key at %s after the rekey: %v; want it refused", r, err)
			}
			st := l.Command(ctx, drift, "--cluster", r, "--key-file", newFile, "status", "--json")
			b, err := st.Output()
			var status api.Status
			if err == nil {
				err = json.Unmarshal(b, &status)
			}
			if err != nil || status.KeyID != next.Key.ID() || status.ClusterID != old.ID() {
				t.Errorf("drift status at %s with the new key: %+v, %v; want key %s, cluster %s", r, status, err, next.Key.ID(), old.ID())
			}
		}
		if _, err := l.WaitMembers(ctx, []int{1, 2, 3}, lab.AllAlive(names...)); err != nil {
			t.Errorf("after the rekey: %v", err)
		}
		att, err := l.Exec(ctx, 2, "drift", "attach", job)
		wantOut := ""
		for i := 1; i <= 40; i++ {
			wantOut += fmt.Sprintln(i)
		}
		if err != nil || att.ExitCode != 7 || string(att.Stdout) != wantOut {
			t.Errorf("the job started before the rekey: %v, exit %d, stdout %s, stderr %q; want 1..40 and exit 7", err, exitOf(att), describeLines(stdoutOf(att)), stderrOf(att))
		}
	})

	t.Run("a node booted again with the old key is refused", func(t *testing.T) {
		if next.ID == "" {
			t.Skip("the rekey failed")
		}
		ctx := waitContext(t, 6*time.Minute)
		if err := l.StopNode(ctx, medium.Node); err != nil {
			t.Fatal(err)
		}
		if err := l.StartNode(ctx, medium.Node); err != nil {
			t.Fatal(err)
		}
		line, err := l.WaitFor(ctx, medium.Node, regexp.MustCompile(`drift: error join refused: .*`+old.ID()))
		if err != nil {
			t.Fatalf("node %d, booted again with the old key, never said it was refused: %v", medium.Node, err)
		}
		t.Logf("node %d: %s", medium.Node, line)
		time.Sleep(10 * time.Second) // gossip time, in case it were to get in
		ms, err := hostNodes(ctx, l, drift, head.Addr, newFile)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == medium.Name && m.State == api.NodeAlive {
				t.Errorf("%s, booted with the old key, is an alive member: %+v", medium.Name, m)
			}
		}
	})

	t.Run("a removed node cannot rejoin", func(t *testing.T) {
		if next.ID == "" {
			t.Skip("the rekey failed")
		}
		ctx := waitContext(t, 8*time.Minute)
		gone := names[2] // node 3, network-booted
		third := filepath.Join(dir, "third.key")
		var res api.RemoveResult
		for {
			cmd := l.Command(ctx, drift, "--cluster", head.Addr, "--key-file", newFile, "remove", gone, "--out", third, "--json")
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			// Exit 3: some node did not take the new key; here node 4,
			// down since it was refused.
			if err == nil || len(out) > 0 {
				if jerr := json.Unmarshal(out, &res); jerr != nil {
					t.Fatalf("drift remove --json: %v, %v: %s%s", err, jerr, out, stderr.String())
				}
				t.Logf("drift remove %s (%v): %s", gone, err, out)
				for _, m := range res.Rekey.Missed {
					if m.Node != medium.Name {
						t.Errorf("drift remove: %s did not take the new key: %s", m.Node, m.Error)
					}
				}
				break
			}
			if !strings.Contains(stderr.String(), "jobs run on") || ctx.Err() != nil {
				t.Fatalf("drift remove %s: %v\n%s%s", gone, err, out, stderr.String())
			}
			time.Sleep(3 * time.Second) // the job's end is gossiped within seconds
		}
		if !strings.Contains(res.Enrolment, "enrolment refuses it") || slices.Contains(res.Rekey.Took, gone) {
			t.Errorf("drift remove %s = %+v; want its enrolment refused and the rekey without it", gone, res)
		}
		if _, err := l.WaitFor(ctx, 3, regexp.MustCompile(`drift: rekey: removed from the cluster`)); err != nil {
			t.Errorf("node 3 was not told it was removed: %v", err)
		}
		if _, err := hostNodes(ctx, l, drift, head.Addr, newFile); err == nil {
			t.Errorf("the key the removed node held still opens the cluster")
		}
		if err := l.StopNode(ctx, 3); err != nil {
			t.Fatal(err)
		}
		if err := l.StartNode(ctx, 3); err != nil {
			t.Fatal(err)
		}
		line, err := l.WaitFor(ctx, 3, regexp.MustCompile(`drift: enroll: refused: .*drift admit `+gone))
		if err != nil {
			t.Fatalf("node 3, removed and booted again, was not refused by enrolment: %v", err)
		}
		t.Logf("node 3: %s", line)
		ms, err := hostNodes(ctx, l, drift, head.Addr, third)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			if m.Name == gone && m.State == api.NodeAlive {
				t.Errorf("%s, removed, is an alive member again: %+v", gone, m)
			}
		}
		if _, ok := l.Ready(3); ok {
			t.Errorf("node 3, removed, printed its ready line")
		}
	})
}

func exitOf(r *labport.Result) int {
	if r == nil {
		return -1
	}
	return r.ExitCode
}

func stdoutOf(r *labport.Result) string {
	if r == nil {
		return ""
	}
	return string(r.Stdout)
}

func stderrOf(r *labport.Result) string {
	if r == nil {
		return ""
	}
	return string(r.Stderr)
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
