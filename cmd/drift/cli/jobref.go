package cli

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"strings"

	"github.com/driftcluster/drift/agent/api"
)

// resolveJob turns what the user typed for a job (its id, or its name
// when that is unique) into the job's id, asking the cluster's job list.
// When the list cannot be had, an id-shaped ref is passed on as it is.
func resolveJob(ctx context.Context, c *api.Client, ref string) (string, error) {
	ps, err := c.PS(ctx)
	list := ps.Jobs
	if err != nil {
		if _, idErr := api.JobHome(ref); idErr == nil {
			return ref, nil
		}
		return "", fmt.Errorf("look up job %q: %w", ref, err)
	}
	return matchJob(list, ref)
}

// matchJob finds ref among list by id, then by name.
func matchJob(list []api.JobInfo, ref string) (string, error) {
	var named []api.JobInfo
	for _, j := range list {
		if j.ID == ref {
			return j.ID, nil
		}
		if j.Name == ref {
			named = append(named, j)
		}
	}
	switch len(named) {
	case 1:
		return named[0].ID, nil
	case 0:
		if len(list) == 0 {
			return "", fmt.Errorf("no job %q: the cluster has no jobs (drift run starts one)", ref)
		}
		return "", fmt.Errorf("no job %q; jobs are: %s", ref, describeJobs(list, 12))
	}
	return "", fmt.Errorf("%d jobs are named %q: give the id of one: %s", len(named), ref, describeJobs(named, len(named)))
}

// describeJobs lists up to max jobs as "ID (NAME, STATE on NODE)".
func describeJobs(list []api.JobInfo, max int) string {
	sorted := append([]api.JobInfo(nil), list...)
	sort.Slice(sorted, func(i, k int) bool { return sorted[i].ID < sorted[k].ID })
	var parts []string
	for i, j := range sorted {
		if i == max {
			parts = append(parts, fmt.Sprintf("and %d more (drift ps)", len(sorted)-max))
			break
		}
		state := j.State
		if j.Exit != nil {
			state = fmt.Sprintf("exited(%d)", *j.Exit)
		}
		parts = append(parts, fmt.Sprintf("%s (%s, %s on %s)", j.ID, j.Name, state, j.Node))
	}
	return strings.Join(parts, ", ")
}

// jobArgs parses the arguments of a command about one job: the flags of
// fs (the client flags are added here), then the job (id or name) and
// len(more) more arguments, named in more for the usage error. It returns
// the client, the job's id and the other arguments.
func jobArgs(ctx context.Context, fs *flag.FlagSet, args []string, more ...string) (*api.Client, string, []string, error) {
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, "", nil, err
	}
	if fs.NArg() != 1+len(more) {
		fs.Usage()
		want := "one job id or name (drift ps lists them)"
		if len(more) > 0 {
			want = "a job id or name and " + strings.Join(more, " and ")
		}
		return nil, "", nil, fmt.Errorf("want %s: %w", want, errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return nil, "", nil, err
	}
	id, err := resolveJob(ctx, c, fs.Arg(0))
	if err != nil {
		return nil, "", nil, err
	}
	return c, id, fs.Args()[1:], nil
}
