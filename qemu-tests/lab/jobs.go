package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/labport"
)

// Exec runs argv on node n through its lab port and returns what it did,
// its output collected; a non-zero exit is a Result, not an error. Any
// number of Execs and Runs may run on a node at once. When ctx ends, the
// command gets SIGINT, then SIGHUP (labport.Run).
func (l *Lab) Exec(ctx context.Context, n int, argv ...string) (*labport.Result, error) {
	if err := l.ensureBroker(ctx, n); err != nil {
		return nil, err
	}
	res, err := labport.Exec(ctx, l.LabSock(n), labport.Request{Argv: argv})
	if err != nil {
		return nil, fmt.Errorf("node %d: %w", n, err)
	}
	return res, nil
}

// Run runs c on node n through its lab port, its standard streams flowing
// as the command runs, and returns how it ended (labport.Run).
func (l *Lab) Run(ctx context.Context, n int, c labport.Command) (labport.ExitStatus, error) {
	if err := l.ensureBroker(ctx, n); err != nil {
		return labport.ExitStatus{}, err
	}
	st, err := labport.Run(ctx, l.LabSock(n), c)
	if err != nil {
		return st, fmt.Errorf("node %d: %w", n, err)
	}
	return st, nil
}

// ExecOK is Exec that fails unless argv exits 0; it returns its stdout.
func (l *Lab) ExecOK(ctx context.Context, n int, argv ...string) (string, error) {
	res, err := l.Exec(ctx, n, argv...)
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return string(res.Stdout), fmt.Errorf("node %d: %q exited %d: %s", n, argv, res.ExitCode, strings.TrimSpace(string(res.Stderr)))
	}
	return string(res.Stdout), nil
}

// Jobs runs drift ps --json on node n and returns every job of the
// cluster it lists.
func (l *Lab) Jobs(ctx context.Context, n int) ([]api.JobInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := l.ExecOK(ctx, n, "drift", "ps", "--json")
	if err != nil {
		return nil, err
	}
	var js []api.JobInfo
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		return nil, fmt.Errorf("node %d: drift ps --json: %w: %q", n, err, out)
	}
	return js, nil
}

// Job returns job id as drift ps --json on node n lists it.
func (l *Lab) Job(ctx context.Context, n int, id string) (api.JobInfo, error) {
	js, err := l.Jobs(ctx, n)
	if err != nil {
		return api.JobInfo{}, err
	}
	for _, j := range js {
		if j.ID == id {
			return j, nil
		}
	}
	return api.JobInfo{}, fmt.Errorf("node %d: drift ps does not list job %s", n, id)
}

// WaitJob polls drift ps on node n, twice a second, until job id is
// listed and ok holds for it, and returns it as last listed. It fails when
// ctx ends, saying what drift ps showed last.
func (l *Lab) WaitJob(ctx context.Context, n int, id string, ok func(api.JobInfo) bool) (api.JobInfo, error) {
	var (
		last    api.JobInfo
		lastErr error
	)
	for {
		j, err := l.Job(ctx, n, id)
		if err == nil && ok(j) {
			return j, nil
		}
		if err == nil {
			last = j
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return last, fmt.Errorf("wait for job %s on node %d: %w; last listed %+v (last error: %v)", id, n, ctx.Err(), last, lastErr)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Running is a WaitJob condition: the job runs on node (a node name).
func Running(node string) func(api.JobInfo) bool {
	return func(j api.JobInfo) bool { return j.State == "running" && j.Node == node }
}

// Migrate runs drift migrate --json JOB TO on node n. A migration drift
// refused or that failed is an error carrying drift's words.
func (l *Lab) Migrate(ctx context.Context, n int, id, to string) (api.MigrateResult, error) {
	out, err := l.ExecOK(ctx, n, "drift", "migrate", "--json", id, to)
	if err != nil {
		return api.MigrateResult{}, err
	}
	var res api.MigrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return res, fmt.Errorf("node %d: drift migrate --json: %w: %q", n, err, out)
	}
	return res, nil
}
