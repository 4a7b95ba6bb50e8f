package qemutests

import (
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// TestBoot boots one node each way drift can be started on a PC and waits
// for its ready line.
func TestBoot(t *testing.T) {
	img := image(t)
	tests := []struct {
		name    string
		boot    lab.BootMode
		nic     lab.NIC
		role    string // "" when the boot menu's default decides
		timeout time.Duration
	}{
		{"kernel virtio-net", lab.BootKernel, lab.NICVirtio, "head", 4 * time.Minute},
		{"kernel e1000", lab.BootKernel, lab.NICE1000, "head", 4 * time.Minute},
		{"kernel e1000e", lab.BootKernel, lab.NICE1000E, "head", 4 * time.Minute},
		{"kernel rtl8139", lab.BootKernel, lab.NICRTL8139, "head", 4 * time.Minute},
		{"iso cdrom seabios", lab.BootISO, lab.NICVirtio, "", 6 * time.Minute},
		{"iso cdrom ovmf", lab.BootISOUEFI, lab.NICVirtio, "", 10 * time.Minute},
		{"usb disk seabios", lab.BootUSB, lab.NICVirtio, "", 6 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := startLab(t, lab.Config{Image: img, Nodes: 1, Boot: tt.boot, NIC: tt.nic})
			t.Logf("qemu command line: %s", l.CommandLine(1))
			ctx := waitContext(t, tt.timeout)
			start := time.Now()
			r, err := l.WaitReadyNode(ctx, 1)
			if err != nil {
				t.Fatalf("boot %s with %s: %v", tt.boot, tt.nic, err)
			}
			t.Logf("ready after %s (accel %s): %s", time.Since(start).Round(100*time.Millisecond), l.Accel(), r.Line)
			checkReady(t, l, img, r, tt.role)
		})
	}
}
