package matrix

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

const deviceHelp = `Network devices:
name "e1000", bus PCI, alias "e1000-82540em", desc "Intel Gigabit Ethernet"
name "e1000e", bus PCI, desc "Intel 82574L GbE Controller"
name "rtl8139", bus PCI
name "virtio-net-pci", bus PCI, alias "virtio-net"
name "vmxnet3", bus PCI, desc "VMWare Paravirtualized Ethernet v3"
`

func TestCells(t *testing.T) {
	h := Host{QEMUVersion: "7.2.22", Devices: parseDevices(deviceHelp)}
	cells := Cells(h)
	if got, want := len(cells), len(Firmwares)*len(Media)*len(NICs); got != want {
		t.Fatalf("Cells() = %d cells, want %d", got, want)
	}
	for _, c := range cells {
		wantSkip := c.NIC == "igb"
		if (c.Skip != "") != wantSkip {
			t.Errorf("cell %s: Skip = %q, want skipped: %v", c.Name(), c.Skip, wantSkip)
		}
	}
	if !strings.Contains(cells[5].Skip, "7.2.22") || cells[5].Name() != "seabios/cd/igb" {
		t.Errorf("cell %s Skip = %q, want the QEMU version in it", cells[5].Name(), cells[5].Skip)
	}
	h.OVMF = "no OVMF"
	for _, c := range Cells(h) {
		if c.Firmware == OVMF && c.NIC != "igb" && c.Skip != "no OVMF" {
			t.Errorf("cell %s without OVMF: Skip = %q, want %q", c.Name(), c.Skip, "no OVMF")
		}
	}
}

func TestCellBoot(t *testing.T) {
	tests := []struct {
		c    Cell
		want lab.BootMode
	}{
		{Cell{Firmware: SeaBIOS, Medium: CD}, lab.BootISO},
		{Cell{Firmware: OVMF, Medium: CD}, lab.BootISOUEFI},
		{Cell{Firmware: SeaBIOS, Medium: USB}, lab.BootUSB},
		{Cell{Firmware: OVMF, Medium: USB}, lab.BootUSBUEFI},
		{Cell{Firmware: OVMF, Medium: PXE}, ""},
	}
	for _, tt := range tests {
		if got := tt.c.Boot(); got != tt.want {
			t.Errorf("%s Boot() = %q, want %q", tt.c.Name(), got, tt.want)
		}
	}
}

func TestPrint(t *testing.T) {
	rs := []Result{
		{Cell: Cell{Firmware: SeaBIOS, Medium: CD, NIC: "e1000"}, Ready: 12340 * time.Millisecond},
		{Cell: Cell{Firmware: SeaBIOS, Medium: CD, NIC: "igb", Skip: "no igb"}},
		{Cell: Cell{Firmware: OVMF, Medium: PXE, NIC: "igb", Skip: "no igb"}},
		{Cell: Cell{Firmware: OVMF, Medium: PXE, NIC: "rtl8139"}, Err: errors.New("timed out\nconsole...")},
	}
	var b bytes.Buffer
	Print(&b, rs)
	out := b.String()
	for _, want := range []string{
		"seabios cd             -      12.3         -         -         -      skip",
		"ovmf pxe               -         -         -      FAIL         -      skip",
		"FAIL ovmf/pxe/rtl8139: timed out\n",
		"skip seabios/cd/igb ovmf/pxe/igb: no igb\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("Print output lacks %q:\n%s", want, out)
		}
	}
}
