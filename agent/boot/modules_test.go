package boot

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testAliases = `# Aliases extracted from modules themselves.
alias pci:v00008086d0000100Esv*sd*bc*sc*i* e1000
alias pci:v00001AF4d00001000sv*sd*bc*sc*i* virtio_pci
alias virtio:d00000001v* virtio_net
alias virtio:d00000003v* virtio_console
alias *:bc0Csc03i30* xhci_pci_catchall
alias acpi*:PNP0501:* 8250_pnp
alias broken [ bad
garbage line
`

func TestAliasMatch(t *testing.T) {
	tab, err := ParseAliases(strings.NewReader(testAliases))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		modalias string
		want     []string
	}{
		{"pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00", []string{"e1000"}},
		{"virtio:d00000001v00001AF4", []string{"virtio_net"}},
		{"virtio:d00000002v00001AF4", nil},
		{"usb:bc0Csc03i30", []string{"xhci_pci_catchall"}},
		{"acpi:PNP0501:", []string{"8250_pnp"}},
		{"", nil},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, tab.Match(tt.modalias)); diff != "" {
			t.Errorf("Match(%q) mismatch (-want +got):\n%s", tt.modalias, diff)
		}
	}
}

// fakeSys builds a sysfs-like tree whose devices have the given modaliases.
func fakeSys(t *testing.T, aliases map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	for dev, alias := range aliases {
		d := filepath.Join(sys, "devices", dev)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "modalias"), []byte(alias+"\n"), 0o444)
	}
	return sys
}

func TestColdplug(t *testing.T) {
	tab, _ := ParseAliases(strings.NewReader(testAliases))
	sys := fakeSys(t, map[string]string{
		"pci0000:00/0000:00:03.0": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"pci0000:00/0000:00:04.0": "pci:v00008086d0000100Esv00008086sd00000000bc02sc00i00",
	})
	var calls []string
	c := &Coldplug{
		SysDir:  sys,
		Aliases: tab,
		Always:  []string{"tcp_diag", "no_such"},
		Load: func(m string) error {
			calls = append(calls, m)
			switch m {
			case "no_such":
				return errors.New("not found")
			case "virtio_pci":
				// Loading the bus driver makes the virtio devices appear.
				d := filepath.Join(sys, "devices", "pci0000:00", "0000:00:03.0", "virtio0")
				os.MkdirAll(d, 0o755)
				os.WriteFile(filepath.Join(d, "modalias"), []byte("virtio:d00000001v00001AF4\n"), 0o444)
			}
			return nil
		},
	}
	loaded, err := c.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"tcp_diag", "no_such", "virtio_pci", "e1000", "virtio_net"}, calls); diff != "" {
		t.Errorf("Load calls mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"tcp_diag", "virtio_pci", "e1000", "virtio_net"}, loaded); diff != "" {
		t.Errorf("loaded mismatch (-want +got):\n%s", diff)
	}
}

func TestEarlyDevice(t *testing.T) {
	tests := []struct {
		modalias string
		want     bool
	}{
		{"pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00", true}, // e1000e
		{"pci:v000010ECd00008139sv00001AF4sd00001100bc02sc00i00", true}, // rtl8139
		{"pci:v00001AF4d00001003sv00001AF4sd00000003bc07sc80i00", true}, // virtio-serial: the virtio bus
		{"virtio:d00000001v00001AF4", true},
		{"virtio:d00000003v00001AF4", true},
		{"virtio:d00000002v00001AF4", false},                             // virtio-blk
		{"pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", false}, // IDE
		{"pci:v00001B36d0000000Dsv00001AF4sd00001100bc0Csc03i30", false}, // xHCI
		{"acpi:PNP0C0C:", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := EarlyDevice(tt.modalias); got != tt.want {
			t.Errorf("EarlyDevice(%q) = %v, want %v", tt.modalias, got, tt.want)
		}
	}
}

func TestColdplugDevices(t *testing.T) {
	tab, _ := ParseAliases(strings.NewReader(testAliases))
	sys := fakeSys(t, map[string]string{
		"pci0000:00/0000:00:04.0": "pci:v00008086d0000100Esv00008086sd00000000bc02sc00i00",
		"pci0000:00/0000:00:05.0": "usb:bc0Csc03i30",
	})
	var calls []string
	c := &Coldplug{
		SysDir:  sys,
		Aliases: tab,
		Devices: EarlyDevice,
		Load:    func(m string) error { calls = append(calls, m); return nil },
	}
	if _, err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"e1000"}, calls); diff != "" {
		t.Errorf("Load calls with Devices: EarlyDevice mismatch (-want +got):\n%s", diff)
	}
}

func TestColdplugBuses(t *testing.T) {
	tab, _ := ParseAliases(strings.NewReader(testAliases))
	sys := fakeSys(t, map[string]string{
		"pci0000:00/0000:00:03.0": "pci:v00001AF4d00001000sv00001AF4sd00000001bc02sc00i00",
		"pci0000:00/0000:00:04.0": "pci:v00008086d0000100Esv00008086sd00000000bc02sc00i00",
		"platform/serial8250":     "acpi:PNP0501:", // not on a bus Coldplug looks at
	})
	link := func(bus, dev string) {
		d := filepath.Join(sys, "bus", bus, "devices")
		os.MkdirAll(d, 0o755)
		if err := os.Symlink(filepath.Join(sys, "devices", dev), filepath.Join(d, filepath.Base(dev))); err != nil {
			t.Fatal(err)
		}
	}
	link("pci", "pci0000:00/0000:00:03.0")
	link("pci", "pci0000:00/0000:00:04.0")
	var calls []string
	c := &Coldplug{
		SysDir:  sys,
		Aliases: tab,
		Buses:   EarlyBuses,
		Devices: EarlyDevice,
		Load: func(m string) error {
			calls = append(calls, m)
			if m == "virtio_pci" { // the bus driver brings the virtio bus and its device
				d := filepath.Join(sys, "devices", "pci0000:00", "0000:00:03.0", "virtio0")
				os.MkdirAll(d, 0o755)
				os.WriteFile(filepath.Join(d, "modalias"), []byte("virtio:d00000001v00001AF4\n"), 0o444)
				link("virtio", "pci0000:00/0000:00:03.0/virtio0")
			}
			return nil
		},
	}
	if _, err := c.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"virtio_pci", "e1000", "virtio_net"}, calls); diff != "" {
		t.Errorf("Load calls with Buses mismatch (-want +got):\n%s", diff)
	}
}
