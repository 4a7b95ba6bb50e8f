package cli

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func TestParseSignal(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want syscall.Signal
		ok   bool
	}{{"TERM", syscall.SIGTERM, true}, {"sigint", syscall.SIGINT, true}, {"9", syscall.SIGKILL, true}, {"USR1", syscall.SIGUSR1, true}, {"NOPE", 0, false}, {"0", 0, false}} {
		got, err := parseSignal(tt.in)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("parseSignal(%q) = %v, %v; want %v (ok %v)", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestWritePS(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	code := 0
	list := []api.JobInfo{
		{ID: "d1b102-1", Name: "counter", Node: "drift-d1b103", Home: "drift-d1b102", State: "running", CPU: 12.4, RSS: 3 << 20,
			Started: now.Add(-90 * time.Second), Moves: 2, Argv: []string{"drift-workload", "counter"},
			Checkpoint: &api.CheckpointInfo{At: now.Add(-20 * time.Second)}},
		{ID: "d1b102-3", Name: "sh", Node: "drift-d1b102", Home: "drift-d1b102", State: "running", Started: now.Add(-time.Minute), Argv: []string{"sh"},
			NoCheckpoint: "cannot be checkpointed: /tmp/x (fd 3): a file outside /cluster"},
		{ID: "d1b102-2", Name: "true", Node: "drift-d1b102", Home: "drift-d1b102", State: "exited", Exit: &code, Started: now.Add(-time.Hour), Argv: []string{"true"}},
	}
	var b strings.Builder
	writePS(&b, list, now)
	want := `JOB       NAME     NODE          HOME          STATE      CPU%  RSS   AGE     MOVES  CKPT     COMMAND
d1b102-1  counter  drift-d1b103  drift-d1b102  running    12    3.0M  1m30s   2      20s ago  drift-workload counter
d1b102-3  sh       drift-d1b102  drift-d1b102  running    0     0B    1m0s    0      none     sh
d1b102-2  true     drift-d1b102  drift-d1b102  exited(0)  0     0B    1h0m0s  0      -        true
d1b102-3: cannot be checkpointed: /tmp/x (fd 3): a file outside /cluster
`
	if b.String() != want {
		t.Errorf("writePS =\n%s\nwant\n%s", b.String(), want)
	}
}
