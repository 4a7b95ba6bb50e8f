package daemon

import (
	"errors"
	"log/slog"
	"os"
	"strings"

	"github.com/driftcluster/drift/agent/packages"
	"golang.org/x/sys/unix"
)

// mountPackages lays the image's Debian packages over the root (package
// packages) and prints "drift: packages mounted=N from=PATH dirs=...".
// A failure is reported on the console and the node boots on without
// them.
//
// When the packages cover the directory driftd runs from (/bin), driftd
// executes itself again from there. Its running program is the file the
// overlay now hides, and every job's init is that program too (started
// as /proc/self/exe): CRIU refuses to dump a process mapping a file that
// its path no longer reaches ("Unaccessible path opened"), so no job
// could migrate. The second run finds the packages mounted and goes on.
func mountPackages(cfg Config, log *slog.Logger) {
	m := &packages.Mounter{Modules: cfg.PackagesModules, Logger: log}
	if load, err := moduleLoader(); err == nil {
		m.Load = load
	} else {
		log.Warn("packages: cannot load modules", "err", err)
	}
	got, err := m.Mount()
	switch {
	case errors.Is(err, packages.ErrNoImage):
		return
	case err != nil:
		cfg.Console.Event("error %v; this node runs without the image's Debian packages", err)
		return
	}
	exe, err := os.Executable()
	if err == nil && !got.Again && got.Covers(exe) {
		log.Info("packages: running driftd again from the directories they cover", "exe", exe, "dirs", strings.Join(got.Dirs, ","))
		err = unix.Exec(exe, os.Args, os.Environ())
		cfg.Console.Event("error packages: run %s again: %v; jobs started on this node cannot migrate", exe, err)
	}
	cfg.Console.Event("packages mounted=%d from=%s dirs=%s", len(got.Dirs), got.Image, strings.Join(got.Dirs, ","))
}
