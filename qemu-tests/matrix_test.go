package qemutests

import (
	"bytes"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
	"github.com/driftcluster/drift/qemu-tests/matrix"
)

// TestMatrix boots one worker per cell of the boot matrix (SeaBIOS and
// OVMF; CD, USB disk and PXE; each NIC model), one cell at a time, beside
// a head that serves DHCP and network boot, and prints the table of times
// from power-on to ready. Cells QEMU cannot run are skipped with the
// reason. It takes about 8 minutes under TCG, too long for every run:
// make test-matrix runs it (DRIFT_QEMU_MATRIX=1); -run
// 'TestMatrix/seabios/pxe' runs a part.
func TestMatrix(t *testing.T) {
	if os.Getenv("DRIFT_QEMU_MATRIX") != "1" {
		t.Skip("the whole boot matrix takes long under TCG: run it with make test-matrix (DRIFT_QEMU_MATRIX=1)")
	}
	img := image(t)
	host, err := matrix.ProbeHost(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	var results []matrix.Result
	t.Cleanup(func() {
		var b bytes.Buffer
		matrix.Print(&b, results)
		fmt.Print(b.String())
		t.Log("\n" + b.String())
	})
	// drift.enroll=auto: a PXE cell's worker is given the cluster key
	// without an operator's drift admit, so its time to ready is the boot's.
	l := startPXELab(t, lab.PXEConfig{Config: lab.Config{Image: img}, HeadArgs: []string{"drift.enroll=auto"}})
	for _, c := range matrix.Cells(host) {
		t.Run(c.Name(), func(t *testing.T) {
			if c.Skip != "" {
				results = append(results, matrix.Result{Cell: c})
				t.Skip(c.Skip)
			}
			res := matrix.Result{Cell: c}
			defer func() { results = append(results, res) }()
			timeout := 6 * time.Minute
			if c.Firmware == matrix.OVMF {
				timeout = 10 * time.Minute
			}
			var n int
			if c.Medium == matrix.PXE {
				n, err = l.AddPXE(t.Context(), lab.PXEWorker{NIC: lab.NIC(c.NIC), UEFI: c.Firmware == matrix.OVMF}, "/usr/share/OVMF")
			} else {
				n, err = l.AddAs(t.Context(), c.Boot(), lab.NIC(c.NIC))
			}
			if err != nil {
				res.Err = err
				t.Fatalf("boot %s: %v", c.Name(), err)
			}
			defer l.StopNode(t.Context(), n) // one cell at a time
			t.Logf("qemu command line: %s", l.CommandLine(n))
			r, err := l.WaitReadyNode(waitContext(t, timeout), n)
			if err != nil {
				res.Err = err
				t.Fatalf("boot %s: %v", c.Name(), err)
			}
			res.Ready = time.Since(l.StartedAt(n))
			t.Logf("ready after %s: %s", res.Ready.Round(100*time.Millisecond), r.Line)
			checkReady(t, l, img, r, "worker")
			checkPhases(t, l, n, true)
			if r.Addr == "none" {
				res.Err = fmt.Errorf("ready without an address: %s", r.Line)
				t.Errorf("boot %s: %v", c.Name(), res.Err)
			}
		})
	}
}
