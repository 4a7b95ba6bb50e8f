package boot

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

const testCmdline = "console=tty0 console=ttyS0,115200"

func testMenu() Menu {
	return Menu{
		Version:   "v1.2.3",
		Kernel:    "/boot/vmlinuz",
		Initramfs: "/boot/initramfs.cpio.zst",
		Key:       "/boot/key.cpio",
		Marker:    "/boot/drift-0123456789abcdef",
		Timeout:   3 * time.Second,
		Entries:   StandardEntries(testCmdline),
	}
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name   string
		golden string
		render func() ([]byte, error)
	}{
		{name: "isolinux", golden: "isolinux.cfg.golden", render: func() ([]byte, error) { return Isolinux(testMenu()) }},
		{name: "grub", golden: "grub.cfg.golden", render: func() ([]byte, error) { return GRUB(testMenu()) }},
		{name: "ipxe", golden: "boot.ipxe.golden", render: func() ([]byte, error) {
			return IPXEScript(IPXE{
				BaseURL:   "http://${next-server}",
				Kernel:    "vmlinuz",
				Initramfs: "initramfs.cpio.zst",
				Cmdline:   testCmdline + " drift.role=worker",
			})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.render()
			if err != nil {
				t.Fatal(err)
			}
			p := filepath.Join("testdata", tt.golden)
			if *update {
				if err := os.WriteFile(p, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("%s differs from %s (-want +got):\n%s", tt.name, p, diff)
			}
		})
	}
}

func TestHeadEntry(t *testing.T) {
	for _, render := range []func(Menu) ([]byte, error){Isolinux, GRUB} {
		got, err := render(testMenu())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(got, []byte(testCmdline+" drift.role=head")) {
			t.Errorf("menu lacks the head entry's command line:\n%s", got)
		}
	}
}

func TestTimeoutUnits(t *testing.T) {
	tests := []struct {
		timeout       time.Duration
		tenths, whole int64
	}{
		{timeout: 3 * time.Second, tenths: 30, whole: 3},
		{timeout: 2500 * time.Millisecond, tenths: 25, whole: 2},
		{timeout: 0, tenths: 0, whole: 0},
	}
	for _, tt := range tests {
		t.Run(tt.timeout.String(), func(t *testing.T) {
			m := Menu{Timeout: tt.timeout}
			if got := m.TimeoutTenths(); got != tt.tenths {
				t.Errorf("TimeoutTenths() = %d, want %d", got, tt.tenths)
			}
			if got := m.TimeoutSeconds(); got != tt.whole {
				t.Errorf("TimeoutSeconds() = %d, want %d", got, tt.whole)
			}
		})
	}
}
