// Command drift is the drift command-line interface: on a node's console
// or, with the cluster key, from any host.
package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/driftcluster/drift/cmd/drift/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
