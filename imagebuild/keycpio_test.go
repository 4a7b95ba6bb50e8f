package imagebuild

import (
	"bytes"
	"testing"

	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/u-root/u-root/pkg/cpio"
)

func TestKeyCPIO(t *testing.T) {
	k, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	c := clusterkey.Cluster{ID: "0123456789abcdef", Key: k} // a key file written by drift rekey
	b, err := KeyCPIO(c)
	if err != nil {
		t.Fatal(err)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("read back the key cpio: %v", err)
	}
	var names []string
	var body []byte
	var mode uint64
	for _, r := range recs {
		names = append(names, r.Name)
		if r.Name == "etc/drift/cluster.key" {
			body = make([]byte, r.FileSize)
			r.ReadAt(body, 0)
			mode = r.Mode & 0o777
		}
	}
	got, err := clusterkey.ParseCluster(body)
	if err != nil || got != c || mode != 0o600 {
		t.Errorf("key cpio holds %v (mode %o, %v), want the key with mode 600; records %q", got, mode, err, names)
	}
}
