package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// arrayFlags are drift run's flags for sweeps (drift run --array).
type arrayFlags struct {
	rng, file, mem, output string
	maxRunning, retries    int
	nice                   int
}

func addArrayFlags(fs *flag.FlagSet) *arrayFlags {
	f := &arrayFlags{}
	fs.StringVar(&f.rng, "array", "", "run one task per index: `FIRST-LAST`[:STEP], e.g. 1-200 or 0-100:10; {} in the command is the index")
	fs.StringVar(&f.file, "array-file", "", "run one task per non-blank line of `F`; {} is the line, {1} {2}... its fields")
	fs.IntVar(&f.maxRunning, "max-running", 0, "with --array: at most `N` tasks at once in the cluster (0: as many as there are free cores)")
	fs.StringVar(&f.mem, "mem", "", "with --array: memory each task needs, e.g. 200M (default: learned from the first tasks' peak RSS)")
	fs.IntVar(&f.retries, "retries", 0, "with --array: rerun a failed task up to `N` times, on another node when there is one")
	fs.IntVar(&f.nice, "nice", 0, "with --array: `N` from 0 to 19; higher waits behind other arrays and runs at idle CPU priority")
	fs.StringVar(&f.output, "output", "", "with --array: stdout `PATTERN` with {}, e.g. out/{}.txt (stderr: PATTERN.err); default ARRAY-DIR/{}.out")
	return f
}

func (f *arrayFlags) set() bool { return f.rng != "" || f.file != "" }

// misused names an array flag given without --array.
func (f *arrayFlags) misused() string {
	switch {
	case f.maxRunning != 0:
		return "--max-running"
	case f.mem != "":
		return "--mem"
	case f.retries != 0:
		return "--retries"
	case f.nice != 0:
		return "--nice"
	case f.output != "":
		return "--output"
	}
	return ""
}

// spec builds the array's spec, reading --array-file here (on the
// caller's machine).
func (f *arrayFlags) spec(job api.JobSpec) (api.ArraySpec, error) {
	s := api.ArraySpec{Argv: job.Argv, Env: job.Env, Dir: job.Dir, Name: job.Name, Range: f.rng,
		MaxRunning: f.maxRunning, Retries: f.retries, Nice: f.nice, Output: f.output}
	if f.rng != "" && f.file != "" {
		return s, fmt.Errorf("--array and --array-file together: give one of them: %w", errUsage)
	}
	if f.rng != "" {
		if _, err := api.ParseRange(f.rng); err != nil {
			return s, fmt.Errorf("--array: %w: %w", err, errUsage)
		}
	}
	if f.mem != "" {
		n, err := api.ParseSize(f.mem)
		if err != nil {
			return s, fmt.Errorf("--mem: %w: %w", err, errUsage)
		}
		s.Mem = n
	}
	if f.file != "" {
		lines, err := readLines(f.file)
		if err != nil {
			return s, err
		}
		s.Lines = lines
	}
	return s, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// readLines reads the non-blank lines of an --array-file.
func readLines(path string) ([]string, error) {
	fh, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(path, api.SharedRoot+"/") && !exists(api.SharedRoot) {
		// From a workstation, /cluster is the nodes', not this machine's.
		return nil, fmt.Errorf("--array-file: %w: the file is read on this machine, which does not mount %s; give a file here, or fetch it first (drift cp :%s .)", err, api.SharedRoot, strings.TrimPrefix(path, api.SharedRoot+"/"))
	}
	if err != nil {
		return nil, fmt.Errorf("--array-file: %w", err)
	}
	defer fh.Close()
	if st, err := fh.Stat(); err == nil && st.Size() > api.MaxBody-64<<10 {
		return nil, fmt.Errorf("--array-file %s: %d bytes, over the %d the agent takes: split it into several arrays", path, st.Size(), api.MaxBody-64<<10)
	}
	var lines []string
	sc := bufio.NewScanner(fh)
	sc.Buffer(make([]byte, 64<<10), api.MaxBody)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" {
			lines = append(lines, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("--array-file %s: %w", path, err)
	}
	if len(lines) == 0 {
		return nil, fmt.Errorf("--array-file %s has no lines: one task per non-blank line", path)
	}
	return lines, nil
}

// runArray submits an array; attached, it shows its progress until every
// task has ended and fails unless every task succeeded.
func runArray(ctx context.Context, c *api.Client, spec api.ArraySpec, detach bool, stdout, stderr io.Writer) error {
	info, err := c.SubmitArray(ctx, spec)
	if err != nil {
		return err
	}
	if detach {
		fmt.Fprintln(stdout, info.ID)
		return nil
	}
	fmt.Fprintf(stderr, "drift: array %s: %d tasks, outputs in %s (drift ps %s; Ctrl-C leaves it running)\n", info.ID, info.Tasks, info.Dir, info.ID)
	return waitArray(ctx, c, info.ID, stdout, stderr, isTerminal(stderr))
}

// waitArray follows an array until every task has ended, printing its
// progress on w (on one line rewritten in place when live), and fails
// unless every task succeeded.
func waitArray(ctx context.Context, c *api.Client, id string, stdout, stderr io.Writer, live bool) error {
	var last string
	lastPrint := time.Time{}
	failures := 0
	seen := false
	for {
		info, err := c.Array(ctx, id)
		switch {
		case errors.Is(err, api.ErrNotFound) && !seen:
			return err
		case err != nil:
			// The node asked may be going down: keep asking, for a while.
			failures++
			if failures > 30 && ctx.Err() == nil {
				return fmt.Errorf("array %s: %w", id, err)
			}
		default:
			failures, seen = 0, true
			line := arrayProgress(info, time.Now())
			if live {
				fmt.Fprintf(stderr, "\r\033[K%s", line)
			} else if line != last && time.Since(lastPrint) >= 10*time.Second || info.Finished() {
				fmt.Fprintln(stderr, line)
				lastPrint = time.Now()
			}
			last = line
			if info.Finished() {
				if live {
					fmt.Fprintln(stderr)
				}
				fmt.Fprintf(stdout, "array %s: %d done, %d failed, %d cancelled of %d; summary in %s/summary.csv\n",
					info.ID, info.Done, info.Failed, info.Cancelled, info.Tasks, info.Dir)
				if info.Done != info.Tasks {
					if info.Failed > 0 {
						if st, err := c.ArrayTasks(ctx, id); err == nil {
							fmt.Fprint(stderr, failedTasks(id, st.List, maxFailedShown))
						}
					}
					return exitError{1}
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if live {
				fmt.Fprintln(stderr)
			}
			// Ctrl-C leaves the sweep alone: it is the cluster's.
			fmt.Fprintf(stderr, "drift: array %s goes on without this terminal: drift wait %s follows it again, drift kill %s stops it\n", id, id, id)
			return exitError{130}
		case <-time.After(time.Second):
		}
	}
}

// arrayProgress is e.g. "a-d1b102-3: 120 queued, 6 running, 70 done,
// 4 failed of 200; 3m12s elapsed, about 5m left".
func arrayProgress(a api.ArrayInfo, now time.Time) string {
	s := fmt.Sprintf("%s: %d queued, %d running", a.ID, a.Queued, a.Running)
	if a.Ready > 0 {
		s += fmt.Sprintf(" (%d more ready)", a.Ready)
	}
	s += fmt.Sprintf(", %d done, %d failed", a.Done, a.Failed)
	if a.Cancelled > 0 {
		s += fmt.Sprintf(", %d cancelled", a.Cancelled)
	}
	s += fmt.Sprintf(" of %d", a.Tasks)
	if a.Started.IsZero() {
		return s
	}
	end := now
	if a.Finished() && !a.Ended.IsZero() {
		end = a.Ended
	}
	elapsed := end.Sub(a.Started).Round(time.Second)
	s += fmt.Sprintf("; %s elapsed", elapsed)
	if ended := a.Done + a.Failed; ended > 0 && !a.Finished() {
		left := time.Duration(float64(elapsed) / float64(ended) * float64(a.Tasks-ended-a.Cancelled)).Round(time.Second)
		s += fmt.Sprintf(", about %s left", left)
	}
	return s
}

// writeArrays prints one line per array.
func writeArrays(w io.Writer, list []api.ArrayInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARRAY\tNAME\tTASKS\tQUEUED\tRUNNING\tDONE\tFAILED\tNICE\tAGE\tCOMMAND")
	for _, a := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\n", a.ID, a.Name, a.Tasks, a.Queued+a.Ready, a.Running, a.Done, a.Failed+a.Cancelled,
			a.Nice, now.Sub(a.Submitted).Round(time.Second), truncate(strings.Join(a.Argv, " "), 40))
	}
	return tw.Flush()
}

// writeTasks prints one line per task of an array.
func writeTasks(w io.Writer, st api.ArrayStatus) error {
	fmt.Fprintln(w, arrayProgress(st.ArrayInfo, time.Now()))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tNODE\tJOB\tEXIT\tELAPSED\tPEAK RSS\tTRIES\tSTDOUT")
	for _, t := range st.List {
		exit := "-"
		if t.Exit != nil {
			exit = fmt.Sprint(*t.Exit)
		}
		rss := "-"
		if t.PeakRSS > 0 {
			rss = humanBytes(t.PeakRSS)
		}
		elapsed := "-"
		if t.Elapsed > 0 {
			elapsed = (time.Duration(t.Elapsed * float64(time.Second))).Round(100 * time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", t.Task, t.State, orDash(t.Node), orDash(t.Job), exit, elapsed, rss, t.Attempts, t.Stdout)
	}
	return tw.Flush()
}

// arrayArg finds an array id among a command's positional arguments and
// returns the arguments without it.
func arrayArg(args []string) (string, []string, bool) {
	for i, a := range args {
		if api.IsArrayID(a) {
			return a, append(append([]string(nil), args[:i]...), args[i+1:]...), true
		}
	}
	return "", args, false
}

// withoutTasks leaves out of a job list the jobs that are tasks of the
// listed arrays: drift ps shows an array as one line.
func withoutTasks(list []api.JobInfo, sweeps []api.ArrayInfo) []api.JobInfo {
	if len(sweeps) == 0 {
		return list
	}
	ids := map[string]bool{}
	for _, a := range sweeps {
		ids[a.ID] = true
	}
	var out []api.JobInfo
	for _, j := range list {
		if id, _, ok := strings.Cut(j.Name, "/"); ok && ids[id] {
			continue
		}
		out = append(out, j)
	}
	return out
}

// writeArraysShown prints the arrays below the jobs, when there are any
// not yet finished or finished within the last day.
func writeArraysShown(w io.Writer, sweeps []api.ArrayInfo, now time.Time) error {
	var shown []api.ArrayInfo
	for _, a := range sweeps {
		if !a.Finished() || now.Sub(a.Ended) < 24*time.Hour {
			shown = append(shown, a)
		}
	}
	if len(shown) == 0 {
		return nil
	}
	fmt.Fprintln(w)
	return writeArrays(w, shown, now)
}

// killArray is drift kill ARRAY: nothing more of it starts, and its
// running tasks get SIGTERM.
func killArray(ctx context.Context, fs *flag.FlagSet, id string, args []string, stdout io.Writer) error {
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("drift kill ARRAY takes no other argument, got %q: %w", fs.Args(), errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	info, err := c.KillArray(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "array %s killed: %d queued tasks will not start, %d running get SIGTERM\n", info.ID, info.Queued+info.Cancelled, info.Running+info.Ready)
	return nil
}

// maxFailedShown is how many failed tasks the end of a sweep names.
const maxFailedShown = 5

// failedTasks names up to max failed tasks of array id's list, one line each: how it
// ended and where its stderr is; and how many more there are.
func failedTasks(id string, list []api.TaskInfo, max int) string {
	var b strings.Builder
	n := 0
	for _, t := range list {
		if t.State != api.TaskFailed {
			continue
		}
		n++
		if n > max {
			continue
		}
		how := "failed"
		switch {
		case t.Signal != 0:
			how = fmt.Sprintf("killed by signal %d", t.Signal)
		case t.Exit != nil:
			how = fmt.Sprintf("exit %d", *t.Exit)
		}
		if t.Error != "" {
			how += " (" + t.Error + ")"
		}
		if t.Node != "" {
			how += " on " + t.Node
		}
		if t.Attempts > 1 {
			how += fmt.Sprintf(" after %d tries", t.Attempts)
		}
		fmt.Fprintf(&b, "  task %s: %s", t.Task, how)
		if t.Stderr != "" {
			fmt.Fprintf(&b, "; its stderr: %s", t.Stderr)
		}
		b.WriteString("\n")
	}
	if n > max {
		fmt.Fprintf(&b, "  and %d more failed: drift ps %s lists every task\n", n-max, id)
	}
	return b.String()
}
