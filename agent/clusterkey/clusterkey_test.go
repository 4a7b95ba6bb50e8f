package clusterkey

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const sampleHex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"

func sampleKey() Key {
	var k Key
	for i := range k {
		k[i] = byte(i)
	}
	return k
}

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    Key
		wantErr bool
	}{
		{name: "plain", text: sampleHex, want: sampleKey()},
		{name: "trailing newline", text: sampleHex + "\n", want: sampleKey()},
		{name: "surrounding whitespace", text: " \t" + sampleHex + "\r\n\n", want: sampleKey()},
		{name: "uppercase", text: strings.ToUpper(sampleHex), want: sampleKey()},
		{name: "empty", text: "", wantErr: true},
		{name: "too short", text: sampleHex[:62], wantErr: true},
		{name: "too long", text: sampleHex + "00", wantErr: true},
		{name: "not hex", text: "zz" + sampleHex[2:], wantErr: true},
		{name: "inner space", text: sampleHex[:32] + " " + sampleHex[33:], wantErr: true},
		{name: "raw bytes", text: string(make([]byte, 32)), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.text))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("Parse(%q) error = %v, want ErrMalformed", tt.text, err)
				}
				if !strings.Contains(err.Error(), "xxd -p -c64") {
					t.Errorf("Parse(%q) error = %q, want it to say how to make a key", tt.text, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) = %v", tt.text, err)
			}
			if got != tt.want {
				t.Errorf("Parse(%q) = %x, want %x", tt.text, got[:], tt.want[:])
			}
		})
	}
}

func TestHexRoundTrip(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if k == (Key{}) {
		t.Fatal("Generate() returned the zero key")
	}
	got, err := Parse([]byte(k.Hex()))
	if err != nil || got != k {
		t.Errorf("Parse(k.Hex()) = %x, %v, want %x", got[:], err, k[:])
	}
}

func TestID(t *testing.T) {
	k := sampleKey()
	id := k.ID()
	if len(id) != 16 {
		t.Errorf("ID() = %q, want 16 hex characters", id)
	}
	if strings.Contains(k.Hex(), id) {
		t.Errorf("ID() = %q is part of the key", id)
	}
	other := k
	other[0] ^= 1
	if other.ID() == id {
		t.Errorf("keys differing in one bit share ID %q", id)
	}
	if k.ID() != id {
		t.Errorf("ID() is not stable")
	}
	if s := k.String(); strings.Contains(s, k.Hex()) {
		t.Errorf("String() = %q reveals the key", s)
	}
}

func TestWriteLoadFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "cluster.key")
	k := sampleKey()
	if err := WriteFile(p, k); err != nil {
		t.Fatalf("WriteFile: %v", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("key file mode = %v, want 0600", perm)
	}
	got, err := LoadFile(p)
	if err != nil || got != k {
		t.Errorf("LoadFile = %x, %v, want %x", got[:], err, k[:])
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries after WriteFile, want 1 (no temp files left)", len(entries))
	}
}

func TestLoadFileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		path string
		want error
	}{
		{name: "missing", path: filepath.Join(dir, "nope.key"), want: os.ErrNotExist},
		{name: "malformed", path: bad, want: ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadFile(tt.path)
			if !errors.Is(err, tt.want) {
				t.Errorf("LoadFile(%q) = %v, want %v", tt.path, err, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sampleHex))
	f.Add([]byte(sampleHex + "\n"))
	f.Add([]byte(""))
	f.Add([]byte("zz"))
	f.Fuzz(func(t *testing.T, text []byte) {
		k, err := Parse(text)
		if err != nil {
			return
		}
		again, err := Parse([]byte(k.Hex()))
		if err != nil || again != k {
			t.Errorf("Parse(Parse(%q).Hex()) = %x, %v, want %x", text, again[:], err, k[:])
		}
	})
}

func TestCluster(t *testing.T) {
	k, next := sampleKey(), sampleKey()
	next[0] = 0xff
	tests := []struct {
		name    string
		text    string
		want    Cluster
		wantErr error
	}{
		{"key alone", sampleHex + "\n", Of(k), nil},
		{"after a rekey", next.Hex() + "\ncluster " + k.ID() + "\n", Cluster{ID: k.ID(), Key: next}, nil},
		{"cluster line in capitals, CRLF", next.Hex() + "\r\ncluster " + strings.ToUpper(k.ID()) + "\r\n", Cluster{ID: k.ID(), Key: next}, nil},
		{"second line not a cluster line", sampleHex + "\nhello\n", Cluster{}, ErrBadClusterLine},
		{"short cluster id", sampleHex + "\ncluster abc\n", Cluster{}, ErrBadClusterLine},
		{"bad key", "zz\ncluster " + k.ID(), Cluster{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseCluster([]byte(tt.text))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("ParseCluster(%q) = %v, %v; want %v, %v", tt.text, got, err, tt.want, tt.wantErr)
			}
			if err != nil {
				return
			}
			if back, err := ParseCluster([]byte(got.Text())); err != nil || back != got {
				t.Errorf("ParseCluster(Text()) = %v, %v; want %v", back, err, got)
			}
			if key, err := Parse([]byte(tt.text)); err != nil || key != tt.want.Key {
				t.Errorf("Parse(%q) = %v, %v; want the key alone", tt.text, key, err)
			}
		})
	}
	if got := Of(k).Text(); got != sampleHex+"\n" {
		t.Errorf("a first key's file = %q, want the hex alone (as before rekeys existed)", got)
	}
	path := filepath.Join(t.TempDir(), "k")
	c := Cluster{ID: k.ID(), Key: next}
	if err := WriteCluster(path, c); err != nil {
		t.Fatal(err)
	}
	if got, err := LoadCluster(path); err != nil || got != c {
		t.Errorf("LoadCluster after WriteCluster = %v, %v; want %v", got, err, c)
	}
}

func TestRing(t *testing.T) {
	old, next := sampleKey(), sampleKey()
	next[0] = 0xff
	r := NewRing(Of(old))
	if err := r.Use(next); !errors.Is(err, ErrNotInstalled) {
		t.Errorf("Use of a key not installed = %v, want ErrNotInstalled", err)
	}
	if !r.Install(next) || r.Install(next) {
		t.Errorf("Install: want true once, then false")
	}
	if r.Current() != old || !r.Accepts(next) || !r.Accepts(old) {
		t.Errorf("after Install: current %v, accepts next %v", r.Current(), r.Accepts(next))
	}
	if err := r.Use(next); err != nil {
		t.Fatal(err)
	}
	if r.Current() != next || !r.Accepts(old) || len(r.Accepted()) != 2 {
		t.Errorf("after Use: current %v, accepted %v", r.Current(), r.Accepted())
	}
	if dropped := r.Drop(); len(dropped) != 1 || dropped[0] != old {
		t.Errorf("Drop = %v, want the old key", dropped)
	}
	if r.Accepts(old) || r.ClusterID() != old.ID() || r.Cluster() != (Cluster{ID: old.ID(), Key: next}) {
		t.Errorf("after Drop: accepts old %v, cluster %v", r.Accepts(old), r.Cluster())
	}
}
