// Command drift-workload runs the test and demo workloads shipped in the
// image:
//
//	drift-workload counter [-n 300] [-every 100ms] [-rss 0]
//	                                                  numbered lines at a steady rate, holding -rss of memory
//	drift-workload burn [-for 0]                      one busy core (0: until killed)
//	drift-workload work -n ITERATIONS                 a fixed amount of CPU work
//	drift-workload touch -rss 64M [-dirty 1M]         resident memory dirtied per second
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/driftcluster/drift/agent/workload"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "drift-workload: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: drift-workload counter|burn|work|touch [flags]")
	}
	fs := flag.NewFlagSet("drift-workload "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "counter":
		n := fs.Int("n", 300, "lines to print (0: forever)")
		every := fs.Duration("every", 100_000_000, "interval between lines")
		rss := fs.String("rss", "0", "memory to hold resident meanwhile (K, M, G suffixes)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		r, err := workload.ParseSize(*rss)
		if err != nil {
			return err
		}
		held := workload.Hold(r)
		defer runtime.KeepAlive(held)
		return workload.Counter(ctx, os.Stdout, *n, *every)
	case "burn":
		d := fs.Duration("for", 0, "how long (0: until killed)")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		fmt.Println(workload.Burn(ctx, *d))
		return nil
	case "work":
		n := fs.Uint64("n", 1<<32, "iterations")
		rss := fs.String("rss", "0", "memory to hold resident meanwhile (K, M, G suffixes)")
		dirty := fs.String("dirty", "0", "bytes of that memory to dirty per second meanwhile")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		r, err := workload.ParseSize(*rss)
		if err != nil {
			return err
		}
		d, err := workload.ParseSize(*dirty)
		if err != nil {
			return err
		}
		if r > 0 {
			tctx, cancel := context.WithCancel(ctx)
			defer cancel()
			ready := make(chan struct{})
			go workload.Touch(tctx, r, d, func() { close(ready) })
			<-ready
		}
		return workload.Work(ctx, *n)
	case "touch":
		rss := fs.String("rss", "64M", "resident size (K, M, G suffixes)")
		dirty := fs.String("dirty", "1M", "bytes dirtied per second")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		r, err := workload.ParseSize(*rss)
		if err != nil {
			return err
		}
		d, err := workload.ParseSize(*dirty)
		if err != nil {
			return err
		}
		return workload.Touch(ctx, r, d, func() { fmt.Printf("resident %d bytes\n", r) })
	}
	return fmt.Errorf("unknown workload %q: want counter, burn, work or touch", args[0])
}
