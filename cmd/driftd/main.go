// Command driftd is the drift node agent. The node's init (drift-init,
// PID 1) starts it; it supervises the agent, itself again, and never
// exits.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/driftcluster/drift/agent/console"
	"github.com/driftcluster/drift/agent/daemon"
	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/logring"
	"github.com/driftcluster/drift/agent/taskexec"
	"github.com/driftcluster/drift/configs/modules"
)

func main() {
	// The agent starts these from drift-job, which is smaller, and from
	// itself where drift-job is missing.
	if len(os.Args) > 1 && os.Args[1] == jobinit.Arg {
		os.Exit(jobinit.Run(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == taskexec.Arg {
		os.Exit(taskexec.Run(os.Args[2:]))
	}
	if len(os.Args) > 1 || os.Getenv(daemon.AgentEnv) == "" && os.Getppid() != 1 {
		// Run by hand from a node's shell: a second agent would fight
		// the node's own for its ports and its network.
		fmt.Fprintln(os.Stderr, "driftd is the node's agent: the node's init starts it at boot and it takes no arguments; it is running already. Use drift (drift help) to work with the cluster.")
		os.Exit(2)
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
