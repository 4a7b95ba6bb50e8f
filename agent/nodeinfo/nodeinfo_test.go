package nodeinfo

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestEncodeDecode(t *testing.T) {
	long := strings.Repeat("é", 300) // 600 bytes of two-byte runes
	tests := []struct {
		name string
		in   Info
		want Info
	}{
		{"zero", Info{}, Info{}},
		{
			"typical",
			Info{Cores: 4, CPUModel: "AMD EPYC", MHz: 2596, Speed: 0.625, MemTotal: 24 << 30, MemFree: 20 << 30,
				Runnable: 3, Load1: 1.25, Jobs: 2, Role: "head", Version: "v0.3.0-4-gabc", BootTime: time.Unix(1700000000, 0), APIPort: 7947},
			Info{Cores: 4, CPUModel: "AMD EPYC", MHz: 2596, Speed: 0.625, MemTotal: 24 << 30, MemFree: 20 << 30,
				Runnable: 3, Load1: 1.25, Jobs: 2, Role: "head", Version: "v0.3.0-4-gabc", BootTime: time.Unix(1700000000, 0), APIPort: 7947},
		},
		{
			"clamped and truncated",
			Info{Cores: 1 << 20, CPUModel: long, MHz: -5, Speed: 1e12, MemTotal: 1<<64 - 1, MemFree: 1<<64 - 1,
				Runnable: -1, Load1: -3, Jobs: 1 << 40, Role: long, Version: long, APIPort: 70000},
			Info{Cores: 65535, CPUModel: strings.Repeat("é", MaxModel/2), MHz: 0, Speed: 4294967.295, MemTotal: 1<<64 - 1, MemFree: 1<<64 - 1,
				Runnable: 0, Load1: 0, Jobs: 1<<32 - 1, Role: strings.Repeat("é", MaxRole/2), Version: strings.Repeat("é", MaxVersion/2), APIPort: 65535},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.in.Encode()
			if len(b) > MaxSize {
				t.Fatalf("Encode() is %d bytes, more than MaxSize %d", len(b), MaxSize)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(Encode(%v)) error %v", tt.in, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode(Encode()) mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	good := Info{CPUModel: "x", Role: "worker", Version: "v1"}.Encode()
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"wrong version", append([]byte{9}, good[1:]...)},
		{"truncated numbers", good[:10]},
		{"truncated string", good[:len(good)-2]}, // the last byte is the flags
		{"string length past end", append(bytes.Clone(good[:len(good)-4]), 200)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := Decode(tt.in); !errors.Is(err, ErrMalformed) {
				t.Errorf("Decode(%x) = %v, %v; want ErrMalformed", tt.in, got, err)
			}
		})
	}
	// Bytes after the known fields are a newer encoder's additions.
	if _, err := Decode(append(bytes.Clone(good), 1, 2, 3)); err != nil {
		t.Errorf("Decode(good + trailing bytes) = %v, want nil", err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	f.Add(Info{Cores: 2, CPUModel: "AMD EPYC", Role: "worker", Version: "dev", BootTime: time.Unix(5, 0)}.Encode())
	f.Add([]byte{})
	f.Add([]byte{1, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		i, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes within memberlist's limit.
		if n := len(i.Encode()); n > MaxSize {
			t.Fatalf("re-encoded %d bytes > %d", n, MaxSize)
		}
	})
}

func TestSample(t *testing.T) {
	proc := fstest.MapFS{
		"cpuinfo": {Data: []byte("processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 2596.140\n\nprocessor\t: 1\nmodel name\t: Test CPU\ncpu MHz\t\t: 1200.000\n")},
		"meminfo": {Data: []byte("MemTotal:       2048 kB\nMemFree:        1024 kB\nMemAvailable:   1536 kB\n")},
		"stat":    {Data: []byte("cpu  1 2 3\nbtime 1700000000\nprocs_running 3\nprocs_blocked 0\n")},
		"loadavg": {Data: []byte("0.75 0.42 0.22 1/86 13315\n")},
	}
	s := &Sampler{Proc: proc, Role: "worker", Version: "v1", APIPort: 7947, Jobs: func() int { return 2 }, Bench: func() float64 { return 1.5 }}
	want := Info{Cores: 2, CPUModel: "Test CPU", MHz: 2596, Speed: 1.5, MemTotal: 2048 * 1024, MemFree: 1536 * 1024,
		Runnable: 3, Load1: 0.75, Jobs: 2, Role: "worker", Version: "v1", BootTime: time.Unix(1700000000, 0), APIPort: 7947}
	if diff := cmp.Diff(want, s.Sample()); diff != "" {
		t.Errorf("Sample() mismatch (-want +got):\n%s", diff)
	}
	// Missing files leave zeros, not errors.
	empty := &Sampler{Proc: fstest.MapFS{}, Bench: func() float64 { return 1 }}
	if diff := cmp.Diff(Info{Speed: 1}, empty.Sample()); diff != "" {
		t.Errorf("Sample() of an empty /proc mismatch (-want +got):\n%s", diff)
	}
}

func TestSampleRealProc(t *testing.T) {
	i := (&Sampler{}).Sample()
	if i.Cores < 1 || i.MemTotal == 0 || i.Speed <= 0 || i.BootTime.IsZero() {
		t.Errorf("Sample() of /proc = %v, want cores, memory, speed and boot time", i)
	}
}

func TestDiffers(t *testing.T) {
	base := Info{Cores: 2, MemTotal: 1000, MemFree: 500, Load1: 1, Speed: 1, MHz: 2000, Role: "worker"}
	tests := []struct {
		name   string
		change func(*Info)
		want   bool
	}{
		{"same", func(*Info) {}, false},
		{"small load change", func(i *Info) { i.Load1 = 1.1 }, false},
		{"large load change", func(i *Info) { i.Load1 = 1.5 }, true},
		{"small memory change", func(i *Info) { i.MemFree = 520 }, false},
		{"large memory change", func(i *Info) { i.MemFree = 600 }, true},
		{"jobs", func(i *Info) { i.Jobs = 1 }, true},
		{"role", func(i *Info) { i.Role = "head" }, true},
		{"clock jitter", func(i *Info) { i.MHz = 2010 }, false},
		{"speed", func(i *Info) { i.Speed = 2 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.change(&o)
			if got := o.Differs(base); got != tt.want {
				t.Errorf("%v.Differs(%v) = %v, want %v", o, base, got, tt.want)
			}
		})
	}
}

func TestFlagsRoundTrip(t *testing.T) {
	for _, in := range []Info{{Role: "worker"}, {Role: "worker", Blocked: true}, {Role: "head", Draining: true, Blocked: true}} {
		out, err := Decode(in.Encode())
		if err != nil || out.Blocked != in.Blocked || out.Draining != in.Draining {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v; want the same flags", in, out, err)
		}
	}
	// Metadata from an agent that sends no flags byte decodes with none set.
	b := Info{Role: "worker", Blocked: true}.Encode()
	if out, err := Decode(b[:len(b)-1]); err != nil || out.Blocked {
		t.Errorf("Decode(without flags) = %+v, %v; want no flags and no error", out, err)
	}
}
