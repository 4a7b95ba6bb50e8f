// Command drift-init is a drift node's /init, PID 1: it mounts what the
// node needs, starts driftd (which supervises the agent) and reaps
// orphans. It is a program of its own, not driftd: the u-root packages it
// uses open /dev/kmsg when they load, and every driftd process, a job's
// init among them, would hold it open, which ties a job to its node.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/u-root/u-root/pkg/cmdline"
	"github.com/u-root/u-root/pkg/libinit"
	"github.com/u-root/u-root/pkg/ulog"
	"golang.org/x/sys/unix"
)

func main() {
	runPID1("/bin/driftd", nil) // never returns
}

// runPID1 is the node's init, PID 1 (the initramfs's /init):
// it does what u-root's init did before it started driftd as uinit,
// without u-root's busybox (a large Go program to load, and its console
// banner), then starts child (driftd, the agent's supervisor) and reaps
// every process that ends orphaned, as PID 1 must. The child is started again if it ever ends.
// It never returns: the kernel panics when PID 1 exits.
//
// The file system and environment are u-root's own (libinit): the same
// mounts (/proc, /sys, devtmpfs, devpts, /tmp, cgroups...), PATH and
// loopback, so that what driftd, jobs and CRIU find is unchanged.
func runPID1(child string, args []string) {
	// Only messages more severe than "notice" reach the console, as under
	// u-root's init: the kernel's chatter stays in dmesg.
	ulog.KernelLog.SetConsoleLogLevel(ulog.KLogNotice)
	// A signal sent to PID 1 (kill -TERM 1, a stray killall) must not end
	// it: the kernel would panic. Caught rather than ignored, so that the
	// programs it starts get the default handling back at exec.
	signal.Notify(make(chan os.Signal, 1), unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGPIPE)
	libinit.SetEnv()
	libinit.CreateRootfs()
	libinit.NetInit()
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		started := time.Now()
		err := runChild(child, args)
		fmt.Fprintf(os.Stderr, "drift: init: %s ended (%v); starting it again\n", child, err)
		if time.Since(started) > time.Minute {
			backoff = time.Second
		}
		time.Sleep(backoff)
	}
}

// runChild starts child in its own session with the console as its
// terminal (its output on every console= of the command line, as u-root's
// init did), then reaps processes until the child itself ends.
func runChild(child string, args []string) error {
	cmd := libinit.Command(child,
		libinit.WithTTYControl(true),
		libinit.WithMultiTTY(true, libinit.OpenTTYDevices, cmdline.Consoles()),
		libinit.WithArguments(args...))
	if err := cmd.Start(); err != nil {
		return err
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			// No child at all: the child is gone without our seeing it.
			return err
		}
		if pid == cmd.Process.Pid {
			return fmt.Errorf("exit status %d", ws.ExitStatus())
		}
	}
}
