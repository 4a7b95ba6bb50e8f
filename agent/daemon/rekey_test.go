package daemon

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// TestKeptKey: a head booted from a medium whose key a rekey retired
// uses the key kept on DRIFT-DATA; one booted from a medium made after
// (a key never retired), or of another cluster, keeps its own.
func TestKeptKey(t *testing.T) {
	first, _ := clusterkey.Generate()
	second, _ := clusterkey.Generate()
	third, _ := clusterkey.Generate()
	cluster := first.ID()
	dir := t.TempDir()
	if _, ok, err := keptKey(dir, clusterkey.Of(first)); ok || err != nil {
		t.Fatalf("nothing kept: keptKey = %v, %v; want the medium's key", ok, err)
	}
	kept := clusterkey.Cluster{ID: cluster, Key: second}
	if err := clusterkey.WriteCluster(filepath.Join(dir, keptKeyName), kept); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, retiredKeyName), []byte(first.ID()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	other, _ := clusterkey.Generate()
	tests := []struct {
		name   string
		medium clusterkey.Cluster
		want   bool
	}{
		{"medium from before the rekey", clusterkey.Of(first), true},
		{"medium made with the kept key", kept, false},
		{"medium made after a later rekey", clusterkey.Cluster{ID: cluster, Key: third}, false},
		{"another cluster", clusterkey.Of(other), false},
	}
	for _, tt := range tests {
		got, ok, err := keptKey(dir, tt.medium)
		if err != nil || ok != tt.want || (ok && got != kept) {
			t.Errorf("%s: keptKey = %v, %v, %v; want adopt %v", tt.name, got, ok, err, tt.want)
		}
	}
	os.WriteFile(filepath.Join(dir, keptKeyName), []byte("garbage\n"), 0o600)
	if _, ok, err := keptKey(dir, clusterkey.Of(first)); ok || err == nil {
		t.Errorf("a damaged kept key: keptKey = %v, %v; want an error and the medium's key", ok, err)
	}
}
