package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/driftcluster/drift/agent/boot"
)

func TestKeyMissing(t *testing.T) {
	enrolling := boot.Options{EnrollHead: "10.77.0.1:7949", EnrollFP: "ab"}
	missing := fmt.Errorf("load the cluster key: %w", fs.ErrNotExist)
	for _, tt := range []struct {
		name string
		err  error
		o    boot.Options
		want bool
	}{
		{"network-booted", missing, enrolling, true},
		{"no enrolment on the command line", missing, boot.Options{}, false},
		{"a bad key file is not a missing one", errors.New("malformed"), enrolling, false},
	} {
		if got := keyMissing(tt.err, tt.o); got != tt.want {
			t.Errorf("%s: keyMissing(%v, %+v) = %v, want %v", tt.name, tt.err, tt.o, got, tt.want)
		}
	}
}

func TestMountedFS(t *testing.T) {
	if fstype, ok := mountedFS("/proc"); !ok || fstype != "proc" {
		t.Errorf("mountedFS(/proc) = %q, %v; want proc", fstype, ok)
	}
	if _, ok := mountedFS("/no/such/mount"); ok {
		t.Errorf("mountedFS of a directory nothing is mounted on says it is mounted")
	}
}
