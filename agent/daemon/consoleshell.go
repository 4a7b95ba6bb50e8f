package daemon

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"

	"github.com/driftcluster/drift/agent/supervise"
)

// consoleTTYs are the terminals of the kernel's consoles that a person
// can type at, from /proc/consoles: a serial port as itself, the VGA
// console (tty0, whichever virtual terminal is shown) as tty1.
func consoleTTYs(procConsoles string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(procConsoles))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		name := f[0]
		if name == "tty0" {
			name = "tty1"
		}
		if !strings.HasPrefix(name, "tty") {
			continue // netconsole, ttyprintk and the like
		}
		if dev := "/dev/" + name; !slices.Contains(out, dev) {
			out = append(out, dev)
		}
	}
	return out
}

// consoleShell keeps a shell on tty, its controlling terminal, started
// again when it ends: a person at the node's screen or serial line can
// always type drift commands there.
func consoleShell(tty string, log *slog.Logger) supervise.Service {
	return supervise.Service{Name: "shell " + tty, Run: func(ctx context.Context) error {
		f, err := os.OpenFile(tty, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("console shell: %w", err)
		}
		defer f.Close()
		// As busybox's init does: the shell starts once someone presses
		// Enter, so that nothing but the node's own lines shows until then.
		fmt.Fprintf(f, "\r\ndrift: press Enter for a shell on %s\r\n", strings.TrimPrefix(tty, "/dev/"))
		if _, err := bufio.NewReader(f).ReadString('\n'); err != nil {
			return fmt.Errorf("console %s: %w", tty, err)
		}
		term := "linux"
		if strings.HasPrefix(tty, "/dev/ttyS") {
			term = "vt100"
		}
		cmd := exec.CommandContext(ctx, "/bin/sh", "-l")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
		cmd.Dir = "/"
		cmd.Env = append(os.Environ(), "TERM="+term, "HOME=/root", "PS1=\\h:\\w# ")
		// Its own session with tty as its terminal: Ctrl-C reaches what
		// runs in it, never the agent.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
		err = cmd.Run()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		log.Info("console shell ended; starting another", "tty", tty, "err", err)
		return fmt.Errorf("shell on %s ended", tty)
	}}
}
