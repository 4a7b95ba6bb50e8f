package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/driftcluster/drift/agent/boot"
	"github.com/driftcluster/drift/agent/console"
	"github.com/driftcluster/drift/agent/supervise"
)

// AgentEnv marks the driftd process that runs the agent: the driftd that
// init starts only supervises it (SuperviseAgent).
const AgentEnv = "DRIFTD_AGENT"

// oomShield is the OOM score adjustment of both driftd processes: the
// kernel's OOM killer takes a job, never the agent. A job's init gives
// its job the default back (jobinit.Run).
const oomShield = -1000

// SuperviseAgent runs the agent as a child process, this executable again
// with AgentEnv set, and starts it again whenever it ends, after a
// backoff, until ctx ends: a panic in any goroutine, or a kill, costs the
// node a restart of its agent, said on the console, not its agent. Both
// processes are shielded from the OOM killer. It also keeps a shell on
// each console a person can type at.
func SuperviseAgent(ctx context.Context, con *console.Console, log *slog.Logger) error {
	(&boot.PhaseLog{Event: con.Event}).Mark(boot.PhaseInit)
	if err := ShieldFromOOM(); err != nil {
		log.Warn("oom shield", "err", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervise the agent: %w", err)
	}
	sup := &supervise.Supervisor{Logger: log, MinBackoff: time.Second, MaxBackoff: 30 * time.Second, Healthy: time.Minute}
	if b, err := os.ReadFile("/proc/consoles"); err == nil {
		for _, tty := range consoleTTYs(string(b)) {
			sup.Start(ctx, consoleShell(tty, log))
		}
	}
	sup.Run(ctx, supervise.Service{Name: "agent", Run: func(ctx context.Context) error {
		cmd := exec.CommandContext(ctx, exe, os.Args[1:]...)
		cmd.Env = append(os.Environ(), AgentEnv+"=1")
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		err := cmd.Run()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			err = errors.New("exited")
		}
		con.Event("error agent stopped (%v): starting it again", err)
		return fmt.Errorf("agent: %w", err)
	}})
	return ctx.Err()
}

// ShieldFromOOM keeps the kernel's OOM killer off this process and the
// ones it starts until they say otherwise.
func ShieldFromOOM() error {
	return os.WriteFile("/proc/self/oom_score_adj", []byte(fmt.Sprint(oomShield)), 0)
}
