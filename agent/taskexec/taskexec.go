// Package taskexec is the wrapper of one task of a sweep, inside the
// task's job (drift-job task-exec): it runs the command with its output
// in files and records how it ended. It is built into drift-job, a binary
// kept small on purpose: it is dumped with its job at every move and
// checkpoint and started with every task; driftd still runs it too.
package taskexec

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/jobinit"
	"github.com/driftcluster/drift/agent/procfs"
	"golang.org/x/sys/unix"
)

// Arg is the first argument that makes drift-job (or driftd) run as the wrapper of
// one task, inside the task's job:
//
//	drift-job task-exec --out F --err F --result R [--idle] -- CMD ARGS...
//
// It runs CMD with its stdout and stderr in the files, waits for it, and
// writes the task's result (exit status, peak RSS, times, node) to R.ok
// or R.fail. It is part of the job, so it moves with it: the result is
// written where the task ends, even if the node that started it is gone.
const Arg = "task-exec"

// Result is what a task's wrapper (or, when the wrapper could not, the
// node that started it) records when a task ends: tasks/KEY.A.ok|.fail.
type Result struct {
	Exit    int       `json:"exit"`
	Signal  int       `json:"signal,omitempty"`
	Node    string    `json:"node"` // where it ended
	Started time.Time `json:"started"`
	Ended   time.Time `json:"ended"`
	PeakRSS uint64    `json:"peak_rss,omitempty"` // bytes
	Error   string    `json:"error,omitempty"`
}

// Run is drift-job task-exec: see Arg. It returns the exit status
// the job ends with, the command's (128+N for a signal N).
func Run(args []string) int {
	fs := flag.NewFlagSet("drift-job "+Arg, flag.ContinueOnError)
	outPath := fs.String("out", "", "file for the command's stdout")
	errPath := fs.String("err", "", "file for the command's stderr")
	resPath := fs.String("result", "", "the result's path, without its .ok or .fail")
	idle := fs.Bool("idle", false, "run the command at idle CPU priority (SCHED_IDLE)")
	hold := fs.Bool("hold", false, "wait for SIGUSR2 before starting the command (a task started ahead of its turn), removing the file RESULT.waiting then")
	workDir := fs.String("dir", "", "run the command in this directory (\"\": the job's)")
	// First: a task started ahead is released by SIGUSR2, which would
	// kill this process before the handler is set.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	comm := procfs.Proc{}.Comm(os.Getpid())
	if *hold {
		// SIGUSR2 is caught (above): the node may let this run now.
		setComm(WaitingComm)
	}
	argv := fs.Args()
	res := Result{Started: time.Now()}
	finish := func(code, sig int, why string) int {
		res.Exit, res.Signal, res.Error, res.Ended = code, sig, why, time.Now()
		res.Node = hostname() // now: the task may have moved since it started
		if why != "" {
			fmt.Fprintf(os.Stderr, "drift: task: %s\n", why)
		}
		if *resPath != "" {
			if err := WriteResult(*resPath, res); err != nil {
				fmt.Fprintf(os.Stderr, "drift: task: %v\n", err)
			}
		}
		return code
	}
	if len(argv) == 0 || *outPath == "" || *errPath == "" || *resPath == "" {
		return finish(2, 0, "usage: drift-job task-exec --out F --err F --result R [--idle] -- CMD ARGS...")
	}
	var files [2]*os.File
	for i, p := range []string{*outPath, *errPath} {
		// The directory is made only if it is missing: each look at
		// the shared storage is a message the head answers.
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return finish(126, 0, fmt.Sprintf("output directory: %v", err))
			}
			f, err = os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
		}
		if err != nil {
			return finish(126, 0, fmt.Sprintf("output file: %v", err))
		}
		defer f.Close()
		files[i] = f
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(files[1], "drift: %v\n", err)
		return finish(127, 0, err.Error())
	}
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	argv[0] = jobinit.BusyboxName(path, argv[0])
	dir, _ := os.Getwd()
	if *workDir != "" {
		// Here, not as the job's own directory: the agent starts a job
		// with vfork, and a vforked child that looks up a directory on
		// the head's own 9P export, before the exec, waits for the very
		// agent it stopped (on a one-core node, for ever).
		dir = *workDir
		if err := os.Chdir(dir); err != nil {
			fmt.Fprintf(files[1], "drift: %v\n", err)
			return finish(126, 0, err.Error())
		}
	}
	if *hold {
		sig, ok := waitTurn(sigs, WaitingMarker(*resPath))
		setComm(comm)
		if !ok {
			// Stopped before it ran: the task is not failed but lost,
			// queued again (or cancelled, if its array was killed). The
			// node that gave it back to the queue has said why already.
			if _, err := os.Stat(*resPath + ".lost"); err != nil {
				if err := WriteLost(*resPath, fmt.Sprintf("stopped by %v while it waited for a core on %s", sig, hostname())); err != nil {
					fmt.Fprintf(os.Stderr, "drift: task: %v\n", err)
				}
			}
			return 128 + int(sig)
		}
		res.Started = time.Now()
	}
	runtime.LockOSThread() // the child inherits the scheduling policy of the thread it is forked from
	if *idle {
		attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: unix.SCHED_IDLE}
		if err := unix.SchedSetAttr(0, &attr, 0); err != nil {
			fmt.Fprintf(files[1], "drift: idle priority: %v\n", err)
		}
	}
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Dir:   dir,
		Env:   os.Environ(),
		Files: []uintptr{0, files[0].Fd(), files[1].Fd()},
	})
	if err != nil {
		fmt.Fprintf(files[1], "drift: start %s: %v\n", argv[0], err)
		return finish(126, 0, fmt.Sprintf("start %s: %v", argv[0], err))
	}
	go func() {
		for s := range sigs {
			syscall.Kill(pid, s.(syscall.Signal))
		}
	}()
	own, _ := procfs.Proc{}.PeakRSS("self") // after the exec: see peakRSS
	peak := watchPeak(pid)
	var ws syscall.WaitStatus
	var ru syscall.Rusage
	for {
		_, err = syscall.Wait4(pid, &ws, 0, &ru)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		return finish(255, 0, fmt.Sprintf("wait for %s: %v", argv[0], err))
	}
	res.PeakRSS = peakRSS(uint64(ru.Maxrss)*1024, own, peak())
	switch {
	case ws.Signaled():
		return finish(128+int(ws.Signal()), int(ws.Signal()), "")
	default:
		return finish(ws.ExitStatus(), 0, "")
	}
}

// WaitingSuffix names the file beside a task's attempt directory
// (tasks/KEY.A.waiting) that says it was started ahead of its turn and
// waits for SIGUSR2: the node that takes it writes it with its claim,
// the wrapper removes it when it is let run. A look at the queue, which
// lists the tasks' directory, sees which tasks wait without opening
// anything more, and a node a waiting task moved to knows it waits.
const WaitingSuffix = "waiting"

// WaitingMarker is that file for the attempt whose directory is dir.
func WaitingMarker(dir string) string { return dir + "." + WaitingSuffix }

// waitTurn waits until SIGUSR2 comes (ok) or a signal that ends a task
// does (that signal), then removes the file marker.
func waitTurn(sigs <-chan os.Signal, marker string) (syscall.Signal, bool) {
	defer RemoveFile(marker)
	for s := range sigs {
		switch s {
		case syscall.SIGUSR2:
			return 0, true
		case syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT:
			return s.(syscall.Signal), false
		}
	}
	return syscall.SIGKILL, false
}

// WriteResult writes r to base.ok (exit 0) or base.fail, whole or not at
// all: a reader of the task directory sees either nothing or the result.
func WriteResult(base string, r Result) error {
	suffix := ".fail"
	if r.Exit == 0 && r.Error == "" {
		suffix = ".ok"
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return WriteAtomic(base+suffix, b)
}

// WriteAtomic writes b to path through a temporary file and a rename.
func WriteAtomic(path string, b []byte) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// rename(2) itself: os.Rename looks up the new name first, one more
	// message to the head on the shared storage.
	if err := syscall.Rename(tmp, path); err != nil {
		RemoveFile(tmp)
		return fmt.Errorf("write %s: %w", path, &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err})
	}
	return nil
}

// RemoveFile removes the file path if it is there. Unlike os.Remove, it
// does not try rmdir(2) after unlink(2) fails: on the shared storage,
// each is a message to the head.
func RemoveFile(path string) error {
	if err := syscall.Unlink(path); err != nil && err != syscall.ENOENT {
		return &os.PathError{Op: "remove", Path: path, Err: err}
	}
	return nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// peakEvery is how often a task's wrapper samples its memory.
const peakEvery = 500 * time.Millisecond

// watchPeak samples the resident memory of the tree of processes rooted
// at pid (this process's child, by its id in the job's PID namespace),
// summed, at once and every peakEvery, until the function it
// returns is called; that returns the highest sample. The root's own
// high-water mark (VmHWM) counts too, so a peak of the command itself
// between two samples is not missed.
func watchPeak(pid int) func() uint64 {
	var (
		mu   sync.Mutex
		max  uint64
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	sample := func() {
		var p procfs.Proc
		host := p.ChildID(pid)
		if host == 0 {
			return
		}
		sum, _ := p.TreeRSS(host)
		hwm, _ := p.PeakRSS(strconv.Itoa(host))
		mu.Lock()
		max = slices.Max([]uint64{max, sum, hwm})
		mu.Unlock()
	}
	go func() {
		defer close(done)
		t := time.NewTicker(peakEvery)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() uint64 {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		return max
	}
}

// peakRSS is a task's peak resident memory: what wait4 reported for the
// command (ru_maxrss, which counts its reaped descendants) when it is
// above this wrapper's own high-water mark, else the sampled peak. Go
// starts the command with vfork, and the exec then records the wrapper's
// high-water mark as the command's: a command smaller than the wrapper
// (about 14 MB) would report the wrapper's size.
func peakRSS(maxrss, wrapper, sampled uint64) uint64 {
	if maxrss > wrapper {
		return max(maxrss, sampled)
	}
	return sampled
}

// WaitingComm is the command name a wrapper started ahead takes once it
// is ready for the SIGUSR2 that lets it run. That a process catches
// SIGUSR2 does not say so: the job's init catches every signal to pass
// it on, even before it has started the wrapper, and a Go program's
// runtime has a handler for SIGUSR2 from its first instruction, which
// drops the signal until the program asks for it.
const WaitingComm = "drift-waiting"

// setComm sets this process's command name (its main thread's, which
// /proc/PID/comm shows).
func setComm(name string) {
	os.WriteFile("/proc/self/comm", []byte(name), 0)
}

// WriteLost writes base.lost, which says why the attempt at base is lost
// (its task is queued again).
func WriteLost(base, why string) error {
	b, _ := json.Marshal(map[string]string{"why": why, "at": time.Now().UTC().Format(time.RFC3339)})
	return WriteAtomic(base+".lost", b)
}
