// Package jobinit is what runs inside every job beside the user's
// program: its init (drift-job job-init). It is built into drift-job, a
// binary kept small on purpose, because it is dumped with its job at
// every move and checkpoint and started with every job; driftd still
// runs it too.
package jobinit

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Arg is the first argument that makes drift-job (or driftd) run as a
// job's init: drift-job job-init [--dir=DIR] -- CMD ARGS...
const Arg = "job-init"

// Binary is drift-job's path on a node.
const Binary = "/bin/drift-job"

// Command is how the agent starts drift-job with its first argument arg
// (Arg, or the task wrapper's): from Binary, or, on a machine without
// it, from fallback (the agent's own executable, which runs both too).
func Command(arg, fallback string) []string {
	if _, err := os.Stat(Binary); err == nil {
		return []string{Binary, arg}
	}
	return []string{fallback, arg}
}

// Nice is the nice value jobs run at.
const Nice = 19

// Run is the init of a job's PID namespace. As PID 1 it would ignore
// every signal it has no handler for, so it does not run the job itself:
// it starts CMD as its child, passes on the signals it gets, reaps every
// orphan, and exits with the job's status (128+N when a signal N ended
// it, as shells report). It also turns transparent huge pages off for the
// job, inherited by its children (with THP on, memory tracking between
// migration rounds works at 2 MB granularity and pre-copy moves far
// more), lowers the job's priority to Nice, and refuses the job
// pidfd_open (refusePidfd), which would pin Go programs to their node.
//
// CMD runs in DIR (default: the init's own working directory). The init
// itself is started in the node's root and never enters DIR: entering a
// directory of the cluster's shared storage may wait on the network,
// which the agent must not do between its fork and the exec.
func Run(args []string) int {
	dir := ""
	if len(args) > 0 && strings.HasPrefix(args[0], "--dir=") {
		dir, args = strings.TrimPrefix(args[0], "--dir="), args[1:]
	}
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "drift job-init: no command")
		return 127
	}
	unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0)
	// The agent is shielded from the OOM killer and a child inherits
	// that: the job takes the default back, so that the kernel kills a
	// job, not the agent, when memory runs out.
	os.WriteFile("/proc/self/oom_score_adj", []byte("0"), 0)
	// Jobs run at a lower priority than the agent, so that a node busy
	// with jobs still answers, gossips and migrates promptly. Linux keeps
	// a nice value per thread and a child inherits the one of the thread
	// that forks it: renice every thread of this process, and fork from
	// this one.
	runtime.LockOSThread()
	if err := lowerPriority(Nice); err != nil {
		fmt.Fprintf(os.Stderr, "drift: job priority: %v\n", err)
	}
	// On this locked thread, so that the child forked from it inherits it.
	if err := refusePidfd(); err != nil {
		fmt.Fprintf(os.Stderr, "drift: %v\n", err)
	}
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCHLD)
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			fmt.Fprintf(os.Stderr, "drift: %v\n", err)
			return 126
		}
		dir = wd
	}
	path := args[0]
	if !strings.Contains(path, "/") {
		p, err := exec.LookPath(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "drift: %v\n", err)
			return 127
		}
		path = p
	}
	if !filepath.IsAbs(path) { // ./prog, or a relative directory in PATH: the job's directory's
		path = filepath.Join(dir, path)
	}
	if st, err := os.Stat(path); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		if err == nil {
			err = fmt.Errorf("%s: not an executable file", path)
		}
		fmt.Fprintf(os.Stderr, "drift: %v\n", err)
		return 127
	}
	args[0] = BusyboxName(path, args[0])
	// The job runs in dir; the init itself waits in the node's own root.
	// CRIU's parasite makes a scratch directory (proc.crtools) in the
	// working directory of the job's root task, this init: in a directory
	// on the cluster's shared storage, the dumps of jobs on two nodes
	// would collide there, and one cut short would leave it behind for
	// every later dump to fail on.
	if err := os.Chdir("/"); err != nil {
		fmt.Fprintf(os.Stderr, "drift: %v\n", err)
		return 126
	}
	pid, err := syscall.ForkExec(path, args, &syscall.ProcAttr{
		Dir:   dir,
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "drift: start %s: %v\n", args[0], err)
		return 126
	}
	for sig := range sigs {
		if sig != syscall.SIGCHLD {
			syscall.Kill(pid, sig.(syscall.Signal))
			continue
		}
		for {
			var ws syscall.WaitStatus
			got, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
			if err != nil || got <= 0 {
				break
			}
			if got == pid {
				return ExitCode(ws)
			}
		}
	}
	return 0
}

// lowerPriority sets the nice value of every thread of this process,
// until no thread is left at another (the Go runtime may start threads
// meanwhile; they inherit from the thread that starts them).
func lowerPriority(nice int) error {
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		changed := false
		for _, t := range tasks {
			tid, err := nsTID(t.Name())
			if err != nil {
				continue
			}
			if n, err := ThreadNice(tid); err == nil && n == nice {
				continue
			}
			if err := unix.Setpriority(unix.PRIO_PROCESS, tid, nice); err != nil && err != unix.ESRCH {
				return fmt.Errorf("thread %d: %w", tid, err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return fmt.Errorf("threads keep appearing at another priority")
}

// ThreadNice is a thread's nice value.
func ThreadNice(tid int) (int, error) {
	p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
	if err != nil {
		return 0, err
	}
	return 20 - p, nil // getpriority(2) answers 20 - nice, to stay positive
}

// nsTID is the id, in this process's PID namespace, of the thread that
// /proc/self/task lists as name: /proc may belong to an outer namespace
// (a job's init sees the node's /proc), and setpriority takes ids of the
// caller's own. The last NSpid entry is the innermost.
func nsTID(name string) (int, error) {
	b, err := os.ReadFile("/proc/self/task/" + name + "/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			return strconv.Atoi(f[len(f)-1])
		}
	}
	return strconv.Atoi(name)
}

// ExitCode is a wait status as a shell reports it.
func ExitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// BusyboxName is the name to run path under: u-root's busybox picks the
// command by argv[0], so a link such as /bin/sh → ../bbin/gosh must be
// run as "gosh".
func BusyboxName(path, argv0 string) string {
	target, err := os.Readlink(path)
	if err != nil || !strings.Contains(target, "bbin/") {
		return argv0
	}
	return filepath.Base(target)
}
