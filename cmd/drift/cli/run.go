package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/driftcluster/drift/agent/api"
)

// exitError makes drift exit with a job's status, saying nothing more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func runRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("run", "[--node NAME] [--name N] [--env K=V]... [--stay] [-d] -- CMD ARGS...", stderr)
	node := fs.String("node", "", "start the job on this node (`NAME`, or \"home\" for this one); default: the best node")
	name := fs.String("name", "", "a name for the job in drift ps")
	stay := fs.Bool("stay", false, "never move the job automatically")
	detach := fs.Bool("d", false, "start the job and print its id; drift attach ID connects to it later")
	var extra envFlag
	fs.Var(&extra, "env", "set `K=V` in the job's environment (repeatable; --env PATH=... replaces the node's PATH)")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fs.Usage()
		return fmt.Errorf("no command: drift run -- CMD ARGS...: %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	spec := api.JobSpec{Argv: argv, Env: jobEnv(os.Environ(), extra), Dir: sharedDir(), Name: *name, Node: *node, Stay: *stay}
	if *detach {
		info, err := c.RunDetached(ctx, spec)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, info.ID)
		return nil
	}
	fc, err := c.Run(ctx, spec)
	if err != nil {
		return err
	}
	return terminal(fc, stdin, stdout, stderr)
}

// envFlag collects repeated --env K=V flags.
type envFlag []string

func (e *envFlag) String() string { return strings.Join(*e, " ") }

func (e *envFlag) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("want K=V, got %q", v)
	}
	*e = append(*e, v)
	return nil
}

// jobEnv is the environment a job gets: the caller's, without its PATH
// (the caller's programs are not on the node: the job gets the node's
// PATH), then the --env settings, which win.
func jobEnv(caller, extra []string) []string {
	set := map[string]bool{}
	for _, kv := range extra {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	var env []string
	for _, kv := range caller {
		k, _, _ := strings.Cut(kv, "=")
		if k != "PATH" && !set[k] {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}

// sharedDir is the caller's directory when it is on the cluster's shared
// storage, where the job will find the same files on any node; "" lets
// the agent choose.
func sharedDir() string {
	wd, err := os.Getwd()
	if err != nil {
		return ""
	}
	if wd == "/cluster" || strings.HasPrefix(wd, "/cluster/") {
		return filepath.Clean(wd)
	}
	return ""
}

// terminal connects the user's terminal to a job's stream until the job
// exits, and returns its status as an exitError. Ctrl-C and the other
// terminal signals go to the job.
func terminal(fc *api.FrameConn, stdin io.Reader, stdout, stderr io.Writer) error {
	defer fc.Close()
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			fc.Write(api.FrameSignal, []byte{byte(s.(syscall.Signal))})
		}
	}()
	var id string
	started := false
	for {
		f, err := fc.Read()
		if err != nil {
			if id != "" {
				return fmt.Errorf("lost the connection to the agent; job %s keeps running: drift attach %s", id, id)
			}
			return fmt.Errorf("lost the connection to the agent: %w", err)
		}
		switch f.Type {
		case api.FrameInfo:
			var info api.JobInfo
			json.Unmarshal(f.Data, &info)
			id = info.ID
			if !started && stdin != nil {
				started = true
				go copyStdin(fc, stdin)
			}
		case api.FrameStdout:
			stdout.Write(f.Data)
		case api.FrameStderr:
			stderr.Write(f.Data)
		case api.FrameExit:
			var st api.ExitStatus
			json.Unmarshal(f.Data, &st)
			if st.Error != "" {
				fmt.Fprintf(stderr, "drift: job %s: %s\n", id, st.Error)
			}
			if st.Code != 0 {
				return exitError{st.Code}
			}
			return nil
		case api.FrameError:
			return errors.New(string(f.Data))
		}
	}
}

func copyStdin(fc *api.FrameConn, stdin io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := stdin.Read(buf)
		if n > 0 && fc.Write(api.FrameStdin, buf[:n]) != nil {
			return
		}
		if err != nil {
			fc.Write(api.FrameStdinEOF, nil)
			return
		}
	}
}

func runAttach(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("attach", "JOB", stderr)
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("want one job id or name (drift ps lists them): %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	id, err := resolveJob(ctx, c, fs.Arg(0))
	if err != nil {
		return err
	}
	fc, err := c.Attach(ctx, id)
	if err != nil {
		return err
	}
	return terminal(fc, stdin, stdout, stderr)
}
