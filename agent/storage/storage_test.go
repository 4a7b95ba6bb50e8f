package storage

import (
	"errors"
	"net/netip"
	"testing"
)

func TestParseSource(t *testing.T) {
	tests := []struct {
		in       string
		want     Source
		wantErr  bool
		wantArgs [3]string
	}{
		{in: "9p://10.0.0.5:5641", want: Source{Kind: Kind9P, Host: netip.MustParseAddr("10.0.0.5"), Port: 5641},
			wantArgs: [3]string{"10.0.0.5", "9p", "trans=tcp,port=5641,version=9p2000.L,msize=262144,cache=mmap"}},
		{in: "9p://10.0.0.5", want: Source{Kind: Kind9P, Host: netip.MustParseAddr("10.0.0.5"), Port: DefaultPort},
			wantArgs: [3]string{"10.0.0.5", "9p", "trans=tcp,port=5640,version=9p2000.L,msize=262144,cache=mmap"}},
		{in: "nfs://192.168.1.10/srv/drift", want: Source{Kind: KindNFS, Host: netip.MustParseAddr("192.168.1.10"), Export: "/srv/drift"},
			wantArgs: [3]string{"192.168.1.10:/srv/drift", "nfs4", "vers=4.1,proto=tcp,addr=192.168.1.10,hard,timeo=100,retrans=3"}},
		{in: "nfs://192.168.1.10:2050/x", want: Source{Kind: KindNFS, Host: netip.MustParseAddr("192.168.1.10"), Port: 2050, Export: "/x"},
			wantArgs: [3]string{"192.168.1.10:/x", "nfs4", "vers=4.1,proto=tcp,addr=192.168.1.10,hard,timeo=100,retrans=3,port=2050"}},
		{in: "nfs://nas.local/srv", wantErr: true},    // names need a resolver the node lacks at boot
		{in: "nfs://192.168.1.10", wantErr: true},     // no export
		{in: "9p://10.0.0.5:5640/dir", wantErr: true}, // 9p exports one directory
		{in: "9p://10.0.0.5:99999", wantErr: true},
		{in: "smb://10.0.0.5/share", wantErr: true},
		{in: "10.0.0.5:/srv", wantErr: true},
		{in: "9p://[fe80::1]:5640", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseSource(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrBadSource) {
					t.Errorf("ParseSource(%q) = %+v, %v; want ErrBadSource", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseSource(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if s := got.String(); s != tt.in && s != tt.in+":5640" {
				t.Errorf("ParseSource(%q).String() = %q", tt.in, s)
			}
			src, fstype, data, _ := got.mountArgs()
			if a := [3]string{src, fstype, data}; a != tt.wantArgs {
				t.Errorf("mountArgs(%q) = %q, want %q", tt.in, a, tt.wantArgs)
			}
		})
	}
}
