package boot

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCmdline(t *testing.T) {
	key := strings.Repeat("ab", 32)
	tests := []struct {
		name    string
		in      string
		want    Options
		wantErr string
	}{
		{"empty", "", Options{Role: RoleWorker}, ""},
		{"consoles only", "console=tty0 console=ttyS0,115200 quiet", Options{Role: RoleWorker}, ""},
		{"head", "quiet drift.role=head", Options{Role: RoleHead}, ""},
		{"all", "drift.role=worker drift.key=" + key + " drift.join=10.0.0.1:7946,,10.0.0.2:7946 drift.storage=nfs://nas/export drift.dhcp=off ip=dhcp drift.colour=blue",
			Options{Role: RoleWorker, KeyHex: key, Join: []string{"10.0.0.1:7946", "10.0.0.2:7946"}, Storage: "nfs://nas/export", DHCP: "off", IP: "dhcp", Unknown: []string{"drift.colour=blue"}}, ""},
		{"bad role", "drift.role=king", Options{}, "want head or worker"},
		{"short key", "drift.key=abcd", Options{}, "64 hex digits"},
		{"bad storage", "drift.storage=smb://x", Options{}, "9p://HOST:PORT"},
		{"range", "drift.range=10.78.0.0/16", Options{Role: RoleWorker, Range: "10.78.0.0/16"}, ""},
		{"bad range", "drift.range=fe80::/64", Options{}, "IPv4 network"},
		{"bad dhcp", "drift.dhcp=maybe", Options{}, "server, proxy or off"},
		{"lab", "drift.lab=1", Options{Role: RoleWorker, Lab: true}, ""},
		{"no lab", "drift.lab=0", Options{Role: RoleWorker}, ""},
		{"bad lab", "drift.lab=yes", Options{}, "want 1"},
		{"enroll approve", "drift.enroll=approve", Options{Role: RoleWorker, Enroll: "approve"}, ""},
		{"enroll auto", "drift.enroll=auto", Options{Role: RoleWorker, Enroll: "auto"}, ""},
		{"enroll macs", "drift.enroll=52:54:00:12:34:56,52:54:00:AB:CD:EF", Options{Role: RoleWorker, Enroll: "52:54:00:12:34:56,52:54:00:AB:CD:EF"}, ""},
		{"enroll bad mac", "drift.enroll=52:54:00:12:34", Options{}, "is not a MAC address"},
		{"enroll empty", "drift.enroll=", Options{}, "is empty"},
		{"enroll worker", "drift.enroll_head=10.77.0.1:7949 drift.enroll_fp=" + strings.ToUpper(key),
			Options{Role: RoleWorker, EnrollHead: "10.77.0.1:7949", EnrollFP: key}, ""},
		{"enroll bad head", "drift.enroll_head=head", Options{}, "want IP:PORT"},
		{"enroll bad fp", "drift.enroll_fp=abc", Options{}, "64 hex digits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCmdline(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseCmdline(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCmdline(%q) error: %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseCmdline(%q) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func FuzzParseCmdline(f *testing.F) {
	f.Add("drift.role=head drift.join=a:1,b:2")
	f.Add("drift.key=" + strings.Repeat("0", 64))
	f.Fuzz(func(t *testing.T, s string) {
		o, err := ParseCmdline(s)
		if err == nil && o.Role != RoleHead && o.Role != RoleWorker {
			t.Errorf("ParseCmdline(%q) role %q", s, o.Role)
		}
	})
}
