// Command driftd is the drift node agent. It is the initramfs's /init:
// as PID 1 it sets up the node's file systems and starts itself again as
// the agent's supervisor (boot.RunPID1); it never exits.
package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/driftcluster/drift/agent/arrays"
	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/console"
	"github.com/driftcluster/drift/agent/daemon"
	"github.com/driftcluster/drift/agent/jobs"
	"github.com/driftcluster/drift/agent/logring"
	"github.com/driftcluster/drift/configs/modules"
)

// pid1Child is the driftd that PID 1 starts: this program, by the path
// the image puts it at.
const pid1Child = "/bin/driftd"

func main() {
	// A job's init is PID 1 too, of its own PID namespace: these first.
	if len(os.Args) > 1 && os.Args[1] == jobs.InitArg {
		os.Exit(jobs.RunInit(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == arrays.TaskArg {
		os.Exit(arrays.RunTask(os.Args[2:]))
	}
	if os.Getpid() == 1 {
		boot.RunPID1(pid1Child, nil) // the node's init; never returns
	}
	ring := &logring.Ring{} // the log that `drift logs` reads
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, ring), &slog.HandlerOptions{Level: slog.LevelInfo}))
	con := console.Open("/proc/consoles", "/dev", os.Stdout)
	con.Tee(ring)
	always, err := modules.Read(modules.Always)
	if err != nil {
		log.Error("read module list", "err", err)
	}
	pkgMods, err := modules.Read(modules.Packages)
	if err != nil {
		log.Error("read module list", "err", err)
	}
	if !daemon.OnNode() {
		con.Event("error %v", daemon.ErrNotANode)
		os.Exit(1)
	}
	if os.Getenv(daemon.AgentEnv) == "" {
		// The driftd that init started keeps the agent running as its
		// child. It must not return: init would start a shell and, once
		// that exits, the kernel would panic.
		err := daemon.SuperviseAgent(context.Background(), con, log)
		con.Event("error agent supervisor stopped: %v", err)
		for {
			time.Sleep(time.Hour)
		}
	}
	daemon.ShieldFromOOM()
	err = daemon.Run(context.Background(), daemon.Config{Logger: log, Console: con, Log: ring, AlwaysModules: always, PackagesModules: pkgMods})
	// The supervisor says so on the console and starts the agent again.
	log.Error("agent stopped", "err", err)
	os.Exit(1)
}
