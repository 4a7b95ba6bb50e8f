package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// exitError makes drift exit with a job's status, saying nothing more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func runRun(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("run", "[--node NAME] [--name N] [--env K=V]... [--stay] [--checkpoint-every D] [-d] [--array FIRST-LAST[:STEP] | --array-file F [--max-running N] [--mem SIZE] [--retries N] [--nice N] [--output PATTERN]] -- CMD ARGS...", stderr)
	node := fs.String("node", "", "start the job on this node (`NAME`, or \"home\" for this one); default: the best node")
	name := fs.String("name", "", "a name for the job in drift ps")
	stay := fs.Bool("stay", false, "never move the job automatically")
	ckEvery := fs.String("checkpoint-every", "", "checkpoint the job at most this often (`D`, e.g. 30s or 5m; 0: never), so that it starts again elsewhere if its node dies; default: the cluster's (30s, stretched so that checkpoints cost the job at most 5% of its time)")
	detach := fs.Bool("d", false, "start the job and print its id; drift attach ID connects to it later")
	var extra envFlag
	fs.Var(&extra, "env", "set `K=V` in the job's environment (repeatable; --env PATH=... replaces the node's PATH)")
	af := addArrayFlags(fs) // array.go
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f := af.misused(); f != "" && !af.set() {
		return fmt.Errorf("%s is for sweeps: add --array FIRST-LAST or --array-file F: %w", f, errUsage)
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
	if *ckEvery != "" {
		d, err := time.ParseDuration(*ckEvery)
		if *ckEvery == "0" {
			d, err = -1, nil
		}
		if err != nil || d == 0 {
			return fmt.Errorf("--checkpoint-every %q: want a duration such as 30s or 5m, or 0 for no checkpoints: %w", *ckEvery, errUsage)
		}
		if d > 0 && d < time.Second {
			return fmt.Errorf("--checkpoint-every %s: at least 1s, since each checkpoint freezes the job for a moment: %w", d, errUsage)
		}
		spec.CheckpointEvery = d
	}
	if af.set() {
		if *node != "" || *stay {
			return fmt.Errorf("--node and --stay are for single jobs: an array's tasks go wherever there is room: %w", errUsage)
		}
		as, err := af.spec(spec)
		if err != nil {
			return err
		}
		return runArray(ctx, c, as, *detach, stdout, stderr)
	}
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
	if wd == api.SharedRoot || strings.HasPrefix(wd, api.SharedRoot+"/") {
		return filepath.Clean(wd)
	}
	return ""
}
