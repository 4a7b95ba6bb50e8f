package arrays

import (
	"slices"
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

func TestOneNodeWritesTheSummary(t *testing.T) {
	alive := []string{"drift-c", "drift-a", "drift-b"}
	v := &view{rec: &record{ID: "a-00000a-1", Node: "drift-b"}}
	for _, tc := range []struct {
		self, submitter string
		want            bool
	}{
		{"drift-b", "drift-b", true},  // the submitter
		{"drift-a", "drift-b", false}, // another node, at first
		{"drift-a", "drift-z", true},  // the submitter is gone: the first by name
		{"drift-c", "drift-z", false},
	} {
		s := &Service{Self: tc.self, Alive: func() []string { return slices.Clone(alive) }}
		v.rec.Node = tc.submitter
		if got := s.writesSummary(v); got != tc.want {
			t.Errorf("%s, array from %s: writes the summary %v, want %v", tc.self, tc.submitter, got, tc.want)
		}
	}
	// A node that is not the writer writes it once the grace has passed.
	s := &Service{Self: "drift-c", Alive: func() []string { return slices.Clone(alive) }}
	v.rec.Node = "drift-b"
	if s.writesSummary(v) || s.writesSummary(v) {
		t.Fatal("a node that is not the writer writes the summary at once")
	}
	s.endSeen[v.rec.ID] = time.Now().Add(-summaryGrace)
	if !s.writesSummary(v) {
		t.Fatal("the summary is never written when its writer does not write it")
	}
}
