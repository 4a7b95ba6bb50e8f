package discovery

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTXT(t *testing.T) {
	full := Record{ClusterID: "0123456789abcdef", Node: "drift-a1b2c3", Version: "v0.3.0", APIPort: 7947, MemberlistPort: 7946}
	tests := []struct {
		name    string
		txt     []string
		want    Record
		wantErr bool
	}{
		{"round trip", full.TXT(), full, false},
		{"minimal", []string{"id=abc", "node=n", "ml=7946"}, Record{ClusterID: "abc", Node: "n", MemberlistPort: 7946}, false},
		{"unknown keys and bare words ignored", []string{"id=abc", "node=n", "ml=1", "future=x", "flag"}, Record{ClusterID: "abc", Node: "n", MemberlistPort: 1}, false},
		{"first of duplicates counts", []string{"id=abc", "id=def", "node=n", "ml=1"}, Record{ClusterID: "abc", Node: "n", MemberlistPort: 1}, false},
		{"empty", nil, Record{}, true},
		{"no id", []string{"node=n", "ml=7946"}, Record{}, true},
		{"no node", []string{"id=abc", "ml=7946"}, Record{}, true},
		{"no ml", []string{"id=abc", "node=n"}, Record{}, true},
		{"empty id", []string{"id=", "node=n", "ml=7946"}, Record{}, true},
		{"ml not a number", []string{"id=abc", "node=n", "ml=x"}, Record{}, true},
		{"ml out of range", []string{"id=abc", "node=n", "ml=70000"}, Record{}, true},
		{"api zero", []string{"id=abc", "node=n", "ml=1", "api=0"}, Record{}, true},
		{"node with space", []string{"id=abc", "node=a b", "ml=1"}, Record{}, true},
		{"node with control", []string{"id=abc", "node=a\x00", "ml=1"}, Record{}, true},
		{"node too long", []string{"id=abc", "node=" + strings.Repeat("n", 64), "ml=1"}, Record{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTXT(tt.txt)
			if tt.wantErr {
				if !errors.Is(err, ErrMalformedTXT) {
					t.Errorf("ParseTXT(%q) = %+v, %v; want ErrMalformedTXT", tt.txt, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTXT(%q) error %v", tt.txt, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTXT(%q) mismatch (-want +got):\n%s", tt.txt, diff)
			}
		})
	}
}

func FuzzParseTXT(f *testing.F) {
	f.Add("id=0123456789abcdef\x00node=drift-a1b2c3\x00v=dev\x00ml=7946\x00api=7947")
	f.Add("id=\x00node=\x00ml=-1")
	f.Fuzz(func(t *testing.T, joined string) {
		r, err := ParseTXT(strings.Split(joined, "\x00"))
		if err != nil {
			return
		}
		// Whatever parses survives its own round trip.
		again, err := ParseTXT(r.TXT())
		if err != nil || again != r {
			t.Fatalf("ParseTXT(%+v.TXT()) = %+v, %v", r, again, err)
		}
	})
}
