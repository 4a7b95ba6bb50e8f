package arrays

import (
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

func TestTakeOnce(t *testing.T) {
	st := store{root: t.TempDir()}
	r, err := st.create("drift-d1b102", api.ArraySpec{Argv: []string{"true"}, Range: "1-2"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	f, got, err := st.take(r.ID, "1", 1)
	if err != nil || !got {
		t.Fatalf("take a queued task: %v %v", got, err)
	}
	if _, again, err := st.take(r.ID, "1", 1); err != nil || again {
		t.Fatalf("a task taken twice: %v %v", again, err)
	}
	if _, err := st.readClaim(r.ID, "1", 1); err == nil {
		t.Fatal("a claim not written yet reads as one")
	}
	tasks, err := st.scan(r)
	if err != nil || !tasks[0].last().claimed || tasks[0].state(0, false) != api.TaskRunning || tasks[1].last() != nil {
		t.Fatalf("scan after a claim: %+v %v", tasks, err)
	}
	want := claim{Node: "drift-d1b102", Job: "d1b102-7", Started: time.Now().UTC().Round(time.Second)}
	if err := writeClaim(f, want); err != nil {
		t.Fatal(err)
	}
	if c, err := st.readClaim(r.ID, "1", 1); err != nil || c != want {
		t.Fatalf("claim read back %+v %v, want %+v", c, err, want)
	}
}
