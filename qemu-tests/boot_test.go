package qemutests

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/boot"
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
			checkPhases(t, l, 1, r.Addr != "none")
		})
	}
}

// checkPhases checks that node n's console logged the boot phases up to
// ready (the line after the ready line), each once and in order, with times since kernel start; the
// address phase only when the node had an address at ready (withAddr).
func checkPhases(t *testing.T, l *lab.Lab, n int, withAddr bool) {
	t.Helper()
	// The phase follows the ready line: wait for it.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := l.WaitFor(ctx, n, regexp.MustCompile(`drift: boot phase=`+boot.PhaseReady+` `)); err != nil {
		t.Errorf("node %d: no boot phase=%s line after its ready line: %v", n, boot.PhaseReady, err)
	}
	b, err := os.ReadFile(l.ConsoleLog(n))
	if err != nil {
		t.Fatal(err)
	}
	at := map[string]time.Duration{}
	for _, line := range strings.Split(string(b), "\n") {
		if name, d, ok := boot.ParsePhase(line); ok {
			if _, dup := at[name]; dup {
				t.Errorf("node %d logged boot phase %s twice", n, name)
			}
			at[name] = d
		}
	}
	var last time.Duration
	for _, p := range []string{boot.PhaseInit, boot.PhaseAgent, boot.PhaseModules, boot.PhaseNIC, boot.PhaseAddress, boot.PhaseReady} {
		d, ok := at[p]
		if !ok && p == boot.PhaseAddress && !withAddr {
			continue
		}
		if !ok {
			t.Errorf("node %d: no boot phase=%s line on its console before ready", n, p)
			continue
		}
		if d < last || d <= 0 {
			t.Errorf("node %d: boot phase %s at %v, before the phase before it (%v)", n, p, d, last)
		}
		last = d
	}
	t.Logf("boot phases (seconds since kernel start): %v", at)
}
