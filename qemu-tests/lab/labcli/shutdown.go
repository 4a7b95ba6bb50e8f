package labcli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Shutdown presses a node's power button (ACPI, QEMU's system_powerdown):
// drift drains the node and powers it off. It waits until the node is
// off and prints what the node said about it.
func Shutdown(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("shutdown", "NODE", stderr)
	timeout := fs.Duration("timeout", 5*time.Minute, "how long to wait for the node to power off (0: do not wait)")
	l, n, err := parseNode(fs, state, args, stderr)
	if err != nil {
		return err
	}
	if !l.Running(n) {
		return fmt.Errorf("shutdown: node %d is off (drift-lab start %d boots it)", n, n)
	}
	start := time.Now()
	if err := l.PowerOff(ctx, n); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if *timeout == 0 {
		fmt.Fprintf(stdout, "pressed node %d's power button; it drains, then powers off (drift-lab logs %d)\n", n, n)
		return nil
	}
	fmt.Fprintf(stdout, "pressed node %d's power button; waiting for it to drain and power off\n", n)
	wctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if err := l.WaitOff(wctx, n); err != nil {
		return fmt.Errorf("shutdown: %w (press again to power off at once, or drift-lab stop %d)", err, n)
	}
	printPowerLines(stdout, l.ConsoleLog(n))
	fmt.Fprintf(stdout, "node %d is off after %s; boot it again with drift-lab start %d\n", n, time.Since(start).Round(100*time.Millisecond), n)
	return nil
}

// printPowerLines copies the power button's console lines from a node's
// console log.
func printPowerLines(w io.Writer, log string) {
	f, err := os.Open(log)
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		if i := strings.Index(line, "drift: power"); i >= 0 {
			fmt.Fprintf(w, "  %s\n", line[i:])
		}
	}
}
