// Command drift-lab boots a drift cluster as QEMU VMs on this host, on a
// private network, and lets you reach the nodes' consoles and run commands
// on them. See package github.com/driftcluster/drift/qemu-tests/lab/labcli.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/driftcluster/drift/qemu-tests/lab/labcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := labcli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	var ee *labcli.ExitError
	if errors.As(err, &ee) {
		os.Exit(ee.Code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "drift-lab:", err)
		os.Exit(1)
	}
}
