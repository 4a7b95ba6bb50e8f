// Package matrix is drift's boot matrix: every way a PC boots drift that
// QEMU can play (firmware × boot medium × network card), why a cell QEMU
// cannot run is skipped, and the table of times to ready that
// make test-matrix prints. The scenario itself is TestMatrix in
// qemu-tests.
package matrix

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Firmware is the PC's firmware.
type Firmware string

const (
	SeaBIOS Firmware = "seabios" // legacy BIOS (QEMU's default)
	OVMF    Firmware = "ovmf"    // UEFI (Debian package ovmf)
)

// Medium is what the firmware boots drift from.
type Medium string

const (
	CD  Medium = "cd"  // the ISO as a CD-ROM
	USB Medium = "usb" // the ISO written to a USB disk
	PXE Medium = "pxe" // the network, served by a drift head
)

// Firmwares, Media and NICs are the matrix's axes, in table order. The
// NICs are QEMU device models; "virtio" is virtio-net-pci.
var (
	Firmwares = []Firmware{SeaBIOS, OVMF}
	Media     = []Medium{CD, USB, PXE}
	NICs      = []string{"virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "igb"}
)

// Cell is one way to boot.
type Cell struct {
	Firmware Firmware
	Medium   Medium
	NIC      string
	Skip     string // why QEMU cannot run this cell; "" when it can
}

// Name is the cell's name, e.g. "ovmf/usb/e1000e" (a subtest name).
func (c Cell) Name() string { return fmt.Sprintf("%s/%s/%s", c.Firmware, c.Medium, c.NIC) }

// Boot is the lab boot mode of a CD or USB cell ("" for PXE).
func (c Cell) Boot() lab.BootMode {
	switch {
	case c.Medium == CD && c.Firmware == SeaBIOS:
		return lab.BootISO
	case c.Medium == CD:
		return lab.BootISOUEFI
	case c.Medium == USB && c.Firmware == SeaBIOS:
		return lab.BootUSB
	case c.Medium == USB:
		return lab.BootUSBUEFI
	}
	return ""
}

// deviceModel is the QEMU device of a NIC name.
func deviceModel(nic string) string {
	if nic == "virtio" {
		return "virtio-net-pci"
	}
	return nic
}

// Host is what the host's QEMU can do.
type Host struct {
	QEMUVersion string          // e.g. "7.2.22"
	Devices     map[string]bool // device models -device help lists
	OVMF        string          // "" when OVMF_CODE_4M.fd is missing: the reason
}

// ProbeHost asks QEMU (qemu-system-x86_64 on PATH, or $VMTEST_QEMU's
// program) which devices it has, and looks for OVMF in ovmfDir ("":
// /usr/share/OVMF).
func ProbeHost(ctx context.Context, ovmfDir string) (Host, error) {
	qemu := "qemu-system-x86_64"
	if f := strings.Fields(os.Getenv("VMTEST_QEMU")); len(f) > 0 {
		qemu = f[0]
	}
	h := Host{Devices: map[string]bool{}}
	out, err := exec.CommandContext(ctx, qemu, "-version").Output()
	if err != nil {
		return h, fmt.Errorf("probe qemu: %s -version: %w (install qemu-system-x86 with make deps)", qemu, err)
	}
	if m := regexp.MustCompile(`version (\d+\.\d+(\.\d+)?)`).FindSubmatch(out); m != nil {
		h.QEMUVersion = string(m[1])
	}
	out, err = exec.CommandContext(ctx, qemu, "-machine", "pc", "-device", "help").Output()
	if err != nil {
		return h, fmt.Errorf("probe qemu: %s -device help: %w", qemu, err)
	}
	h.Devices = parseDevices(string(out))
	if ovmfDir == "" {
		ovmfDir = "/usr/share/OVMF"
	}
	if _, err := os.Stat(filepath.Join(ovmfDir, "OVMF_CODE_4M.fd")); err != nil {
		h.OVMF = fmt.Sprintf("no OVMF_CODE_4M.fd in %s: install the Debian package ovmf (make deps)", ovmfDir)
	}
	return h, nil
}

var deviceRE = regexp.MustCompile(`(?m)^name "([^"]+)"`)

// parseDevices reads the output of qemu -device help.
func parseDevices(help string) map[string]bool {
	d := map[string]bool{}
	for _, m := range deviceRE.FindAllStringSubmatch(help, -1) {
		d[m[1]] = true
	}
	return d
}

// Cells lists the whole matrix, in table order, with the reason for each
// cell h cannot run.
func Cells(h Host) []Cell {
	var out []Cell
	for _, fw := range Firmwares {
		for _, m := range Media {
			for _, nic := range NICs {
				c := Cell{Firmware: fw, Medium: m, NIC: nic}
				switch {
				case !h.Devices[deviceModel(nic)]:
					c.Skip = fmt.Sprintf("QEMU %s has no %s device model (igb came in QEMU 8.0)", h.QEMUVersion, deviceModel(nic))
				case fw == OVMF && h.OVMF != "":
					c.Skip = h.OVMF
				}
				out = append(out, c)
			}
		}
	}
	return out
}

// Result is what one cell did.
type Result struct {
	Cell
	Ready time.Duration // power-on to the ready line
	Err   error         // nil: ready
}

// Print writes the table: one row per firmware and medium, one column
// per NIC, each cell the seconds from power-on to ready, "skip" or
// "FAIL" (or "-" when not run); then the reasons.
func Print(w io.Writer, results []Result) {
	byName := map[string]Result{}
	for _, r := range results {
		byName[r.Name()] = r
	}
	fmt.Fprintf(w, "boot matrix: seconds from power-on to drift: ready\n")
	fmt.Fprintf(w, "%-14s", "")
	for _, nic := range NICs {
		fmt.Fprintf(w, " %9s", nic)
	}
	fmt.Fprintln(w)
	for _, fw := range Firmwares {
		for _, m := range Media {
			fmt.Fprintf(w, "%-14s", string(fw)+" "+string(m))
			for _, nic := range NICs {
				r, ok := byName[Cell{Firmware: fw, Medium: m, NIC: nic}.Name()]
				cell := "-"
				switch {
				case !ok:
				case r.Skip != "":
					cell = "skip"
				case r.Err != nil:
					cell = "FAIL"
				default:
					cell = fmt.Sprintf("%.1f", r.Ready.Seconds())
				}
				fmt.Fprintf(w, " %9s", cell)
			}
			fmt.Fprintln(w)
		}
	}
	skips := map[string][]string{}
	var order []string
	for _, r := range results {
		switch {
		case r.Skip != "":
			if skips[r.Skip] == nil {
				order = append(order, r.Skip)
			}
			skips[r.Skip] = append(skips[r.Skip], r.Name())
		case r.Err != nil:
			fmt.Fprintf(w, "FAIL %s: %s\n", r.Name(), firstLine(r.Err.Error()))
		}
	}
	for _, why := range order {
		fmt.Fprintf(w, "skip %s: %s\n", strings.Join(skips[why], " "), why)
	}
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
