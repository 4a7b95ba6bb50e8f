package labcli

import (
	"context"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// startLab starts the lab up asked for. With pxe, node 1 is the head,
// booted with the ISO as its CD, and the other nodes boot diskless from
// it over the network (virtio-net and e1000 under SeaBIOS, then one under
// UEFI, in turn), enrolling with the head by its drift.enroll=enroll; it
// returns once the head serves and the workers are powered on, within
// timeout.
func startLab(ctx context.Context, cfg lab.Config, pxe bool, enroll string, timeout time.Duration) (*lab.Lab, error) {
	if !pxe {
		return lab.Start(ctx, cfg)
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return lab.StartPXE(wctx, lab.PXEConfig{Config: cfg, Workers: lab.PXEWorkers(cfg.Nodes - 1), HeadArgs: []string{"drift.enroll=" + enroll}})
}
