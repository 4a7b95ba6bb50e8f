package labcli

import (
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// Up boots a lab and returns once every node has printed its ready line.
func Up(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("up", "", stderr)
	defImage := os.Getenv("DRIFT_IMAGE_DIR")
	if defImage == "" {
		defImage = "out"
	}
	nodes := fs.Int("nodes", 3, "number of VMs; node 1 is the head unless --no-head")
	noHead := fs.Bool("no-head", false, "every node a worker: no DHCP server on the segment, nodes take link-local addresses")
	image := fs.String("image", defImage, "image directory written by drift-image (holds image.json); $DRIFT_IMAGE_DIR sets the default")
	nic := fs.String("nic", "virtio", "NIC model: virtio, e1000, e1000e, rtl8139 or vmxnet3")
	boot := fs.String("boot", "kernel", "boot mode: kernel, iso, iso-uefi, usb or usb-uefi")
	mem := fs.Int("mem", lab.DefaultMemoryMB, "memory per VM in MB")
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for every node to be ready")
	appendArgs := fs.String("append", "", "extra kernel command line arguments (kernel boot only)")
	verbose := fs.Bool("v", false, "verbose logging")
	pxe := fs.Bool("pxe", false, "node 1 is the head with the ISO as its CD; the others boot diskless from it over the network (pxe.go)")
	enrollMode := fs.String("enroll", "auto", "with --pxe, the head's drift.enroll: auto (the lab's private network is trusted), approve (each worker waits for drift admit on the head; up then waits until --timeout) or a MAC list")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("up: unexpected arguments %q", fs.Args())
	}
	bm, err := lab.ParseBoot(*boot)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	nm, err := lab.ParseNIC(*nic)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	img, err := lab.LoadImage(*image)
	if err != nil {
		return fmt.Errorf("up: %w", err)
	}
	cfg := lab.Config{
		Image:      img,
		StateDir:   *state,
		Nodes:      *nodes,
		NoHead:     *noHead,
		Boot:       bm,
		NIC:        nm,
		MemoryMB:   *mem,
		KernelArgs: strings.Fields(*appendArgs),
		Logger:     newLogger(stderr, *verbose),
	}
	start := time.Now()
	l, err := startLab(ctx, cfg, *pxe, *enrollMode, *timeout)
	if err != nil {
		if l != nil {
			return fmt.Errorf("up: %w\nthe lab is still running: look with drift-lab status/console/logs, stop it with drift-lab down --state %s", err, l.Dir())
		}
		return fmt.Errorf("up: %w", err)
	}
	fmt.Fprintf(stdout, "started %d nodes (image %s, boot %s, nic %s, accel %s); waiting up to %s for them to be ready\n",
		l.Nodes(), img.Version, bm, nm, l.Accel(), *timeout)
	fmt.Fprintf(stdout, "watch a node boot with: drift-lab console N --state %s (or drift-lab logs N)\n", l.Dir())
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	err = l.WaitReady(wctx, func(r lab.Ready) {
		fmt.Fprintf(stdout, "node %d ready after %s: %s\n", r.Node, time.Since(start).Round(100*time.Millisecond), r.Line)
	})
	if err != nil {
		return fmt.Errorf("up: %w\nthe lab is still running: look with drift-lab status/console/logs, stop it with drift-lab down --state %s", err, l.Dir())
	}
	fmt.Fprintf(stdout, "all %d nodes ready in %s\n", l.Nodes(), time.Since(start).Round(100*time.Millisecond))
	if !*noHead {
		// /cluster comes a few seconds after ready: drift cp or drift run
		// --array at once would be told it is not mounted.
		if missing := waitStorage(wctx, l); len(missing) > 0 {
			fmt.Fprintf(stdout, "shared storage not mounted yet on node %s: drift cp and sweeps there wait for it (drift storage says why)\n", strings.Join(missing, ", "))
		} else {
			fmt.Fprintf(stdout, "shared storage /cluster mounted on every node after %s\n", time.Since(start).Round(100*time.Millisecond))
		}
	}
	for n := 1; n <= l.Nodes(); n++ {
		r, _ := l.Ready(n)
		fmt.Fprintf(stdout, "  node %d %-14s console: %s  log: %s\n", n, r.Name, l.ConsoleSock(n), l.ConsoleLog(n))
	}
	fmt.Fprintf(stdout, "network: bridge %s (%s, %s) in namespace %s; run host commands there with drift-lab run -- CMD\n",
		l.Bridge(), lab.HostAddr, lab.HostLinkLocal, l.NetNS())
	fmt.Fprintln(stdout, "next: drift-lab console N | drift-lab exec N -- CMD | drift-lab add | drift-lab stop/start N | drift-lab status | drift-lab down")
	return nil
}

// storageRE is a node's console line once it has mounted /cluster.
var storageRE = regexp.MustCompile(`drift: storage mounted=\S+`)

// waitStorage waits, up to a minute, until every node of l has mounted
// the shared storage, and returns the nodes that have not.
func waitStorage(ctx context.Context, l *lab.Lab) []string {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var mu sync.Mutex
	var missing []int
	var wg sync.WaitGroup
	for n := 1; n <= l.Nodes(); n++ {
		wg.Go(func() {
			if _, err := l.WaitFor(ctx, n, storageRE); err != nil {
				mu.Lock()
				missing = append(missing, n)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(missing)
	out := make([]string, len(missing))
	for i, n := range missing {
		out[i] = strconv.Itoa(n)
	}
	return out
}
