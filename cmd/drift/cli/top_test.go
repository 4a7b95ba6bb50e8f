package cli

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/driftcluster/drift/agent/api"
)

var topNow = time.Date(2026, 12, 2, 10, 0, 0, 0, time.Local)

// topFixture is a three-node cluster with two jobs running and one
// exited, and a migration in the feed.
func topFixture() topData {
	exit := 0
	return topData{
		At: topNow,
		Nodes: []api.Node{
			{Name: "drift-aaaaaa", State: api.NodeAlive, Self: true, CPUs: 2, Load1: 1.0, MemTotal: 1 << 30, MemFree: 3 << 28, Jobs: 1},
			{Name: "drift-bbbbbb", State: api.NodeAlive, Draining: true, CPUs: 2, Load1: 2.5, MemTotal: 1 << 30, MemFree: 1 << 28, Jobs: 1},
			{Name: "drift-cccccc", State: api.NodeDead, CPUs: 2, MemTotal: 1 << 30},
		},
		Jobs: []api.JobInfo{
			{ID: "aaaaaa-1", Name: "counter", Node: "drift-aaaaaa", State: "running", CPU: 12, RSS: 3 << 20, Started: topNow.Add(-90 * time.Second), Argv: []string{"drift-workload", "counter"}},
			{ID: "aaaaaa-2", Name: "sim", Node: "drift-bbbbbb", State: "running", CPU: 98, RSS: 64 << 20, Started: topNow.Add(-10 * time.Second), Moves: 2, Argv: []string{"sim", "--big"}},
			{ID: "aaaaaa-3", Name: "done", Node: "drift-aaaaaa", State: "exited", Exit: &exit, Started: topNow.Add(-time.Hour)},
		},
		Events: []api.Event{
			{Time: topNow.Add(-5 * time.Second), Node: "drift-aaaaaa", Kind: api.EventMigration, Fields: map[string]any{
				"job": "aaaaaa-2", "to": "drift-bbbbbb", "result": "ok", "freeze_seconds": 0.8421, "total_seconds": 3.2, "bytes": float64(12 << 20)}},
		},
	}
}

func TestTopSnapshot(t *testing.T) {
	var b strings.Builder
	if err := writeTopSnapshot(&b, topFixture(), 80); err != nil {
		t.Fatal(err)
	}
	want := `drift top  3 nodes, 2 alive  2 jobs (+1 exited)  sort: cpu              10:00:00
  NODE          STATE    LOAD               MEMORY                 JOBS
  drift-aaaaaa* alive    [#####.....]  1.00 [###.......]  256M/1.0G     1
  drift-bbbbbb  draining [##########]  2.50 [########..]  768M/1.0G     1
  drift-cccccc  dead     [..........]  0.00 [##########]  1.0G/1.0G     0
  JOB       NAME       NODE          STATE      CPU%   RSS    AGE MOVES COMMAND
  aaaaaa-2  sim        drift-bbbbbb  running      98   64M    10s     2 sim --bi
  aaaaaa-1  counter    drift-aaaaaa  running      12  3.0M  1m30s     0 drift-wo
  EVENTS
  09:59:55 aaaaaa-2 drift-aaaaaa->drift-bbbbbb frozen 840ms total 3.2s 12M

`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("writeTopSnapshot (-want +got):\n%s", diff)
	}
}

// TestTopScreenFits checks the interactive view at a console's 80×25:
// exactly 25 lines of at most 80 columns, the keys on the last, and the
// selected job kept in sight however many jobs there are.
func TestTopScreenFits(t *testing.T) {
	d := topFixture()
	for i := range 40 {
		d.Jobs = append(d.Jobs, api.JobInfo{ID: "bbbbbb-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Node: "drift-aaaaaa", State: "running", CPU: float64(40 - i), Started: topNow})
	}
	u := &topUI{Sort: sortCPU}
	jobs, _ := liveJobs(d.Jobs, u.Sort)
	u.Selected = jobs[len(jobs)-1].ID
	lines := topLines(d, u, 80, 25)
	if len(lines) != 25 {
		t.Fatalf("topLines(80, 25) = %d lines, want 25", len(lines))
	}
	sel := 0
	for i, l := range lines {
		if n := len([]rune(l.Text)); n > 80 {
			t.Errorf("line %d is %d columns: %q", i, n, l.Text)
		}
		if l.Style == styleSelected {
			sel++
			if !strings.Contains(l.Text, u.Selected) {
				t.Errorf("selected line %q does not show %s", l.Text, u.Selected)
			}
		}
	}
	if sel != 1 {
		t.Errorf("%d lines selected, want 1", sel)
	}
	if last := lines[24]; last.Style != styleFooter || !strings.Contains(last.Text, "q quit") {
		t.Errorf("last line = %+v, want the keys", last)
	}
	text := func() string {
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l.Text + "\n")
		}
		return b.String()
	}()
	if !strings.Contains(text, "frozen 840ms") {
		t.Errorf("the screen shows no migration's freeze:\n%s", text)
	}
}

func TestTopKeys(t *testing.T) {
	d := topFixture()
	tests := []struct {
		name     string
		keys     []topKey
		want     topAction
		selected string
		sort     string
		mode     topMode
	}{
		{"q quits", []topKey{{Rune: 'q'}}, topAction{Kind: "quit"}, "", sortCPU, modeBrowse},
		{"down selects the next job", []topKey{{Name: "down"}}, topAction{}, "aaaaaa-1", sortCPU, modeBrowse},
		{"down stops at the last", []topKey{{Name: "down"}, {Name: "down"}, {Name: "down"}}, topAction{}, "aaaaaa-1", sortCPU, modeBrowse},
		{"s cycles the sort", []topKey{{Rune: 's'}, {Rune: 's'}}, topAction{}, "", sortNode, modeBrowse},
		{"a sorts by age", []topKey{{Rune: 'a'}}, topAction{}, "", sortAge, modeBrowse},
		// aaaaaa-2 runs on b: c is dead, so a is the only target.
		{"m then 1 migrates", []topKey{{Rune: 'm'}, {Rune: '1'}}, topAction{Kind: "migrate", Job: "aaaaaa-2", Node: "drift-aaaaaa"}, "aaaaaa-2", sortCPU, modeBrowse},
		{"m then enter migrates", []topKey{{Name: "down"}, {Rune: 'm'}, {Name: "down"}, {Name: "enter"}}, topAction{Kind: "migrate", Job: "aaaaaa-1", Node: "drift-bbbbbb"}, "aaaaaa-1", sortCPU, modeBrowse},
		{"m then a digit out of range waits", []topKey{{Rune: 'm'}, {Rune: '2'}}, topAction{}, "aaaaaa-2", sortCPU, modePickNode},
		{"m then esc cancels", []topKey{{Rune: 'm'}, {Name: "esc"}}, topAction{}, "aaaaaa-2", sortCPU, modeBrowse},
		{"k asks first", []topKey{{Rune: 'k'}}, topAction{}, "aaaaaa-2", sortCPU, modeConfirmKil},
		{"k then y kills", []topKey{{Rune: 'k'}, {Rune: 'y'}}, topAction{Kind: "kill", Job: "aaaaaa-2"}, "aaaaaa-2", sortCPU, modeBrowse},
		{"k then n does not", []topKey{{Rune: 'k'}, {Rune: 'n'}}, topAction{}, "aaaaaa-2", sortCPU, modeBrowse},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u := &topUI{Sort: sortCPU}
			var got topAction
			for _, k := range tt.keys {
				got = u.Key(k, d)
			}
			if got != tt.want || u.Selected != tt.selected || u.Sort != tt.sort || u.Mode != tt.mode {
				t.Errorf("keys %+v: action %+v, selected %q, sort %s, mode %d; want %+v, %q, %s, %d",
					tt.keys, got, u.Selected, u.Sort, u.Mode, tt.want, tt.selected, tt.sort, tt.mode)
			}
		})
	}
}

func TestTopPickShowsNumbers(t *testing.T) {
	d := topFixture()
	u := &topUI{Sort: sortCPU}
	u.Key(topKey{Name: "down"}, d) // aaaaaa-1, on a: b is the target
	u.Key(topKey{Rune: 'm'}, d)
	lines := topLines(d, u, 80, 25)
	var picked []string
	for _, l := range lines {
		if strings.HasPrefix(l.Text, "1 ") {
			picked = append(picked, l.Text)
		}
	}
	if len(picked) != 1 || !strings.Contains(picked[0], "drift-bbbbbb") {
		t.Errorf("node rows numbered: %q, want drift-bbbbbb as 1", picked)
	}
	if last := lines[len(lines)-1].Text; !strings.HasPrefix(last, "move aaaaaa-1 to: 1-1") {
		t.Errorf("footer = %q, want the prompt", last)
	}
}

func TestTopKillPrompt(t *testing.T) {
	d := topFixture()
	u := &topUI{Sort: sortCPU}
	u.Key(topKey{Rune: 'k'}, d)
	lines := topLines(d, u, 80, 25)
	if got, want := lines[len(lines)-1].Text, "kill aaaaaa-2 (sim --big on drift-bbbbbb)? y/n"; got != want {
		t.Errorf("footer after k = %q, want %q", got, want)
	}
}

func TestEventSummary(t *testing.T) {
	at := topNow
	tests := []struct {
		e    api.Event
		want string
	}{
		{api.Event{Time: at, Node: "drift-a", Kind: api.EventMigration, Fields: map[string]any{"job": "a-1", "to": "drift-b", "result": "failed", "error": "restore: boom"}},
			"a-1: drift-a -> drift-b failed: restore: boom"},
		{api.Event{Time: at, Node: "drift-a", Kind: api.EventDecision, Fields: map[string]any{"job": "a-1", "to": "drift-b", "reason": "b is idle"}},
			"a-1 balancer: drift-a -> drift-b: b is idle"},
		{api.Event{Time: at, Node: "drift-a", Kind: api.EventRefusal, Fields: map[string]any{"job": "a-1", "to": "drift-b", "refusal": "busy"}},
			"a-1 refused drift-a -> drift-b: busy"},
		{api.Event{Time: at, Node: "drift-a", Kind: api.EventDeath, Fields: map[string]any{"member": "drift-c"}},
			"drift-c dead (seen by drift-a)"},
		{api.Event{Time: at, Node: "drift-c", Kind: api.EventJoin, Fields: map[string]any{"member": "drift-c"}},
			"drift-c joined"},
		{api.Event{Time: at, Node: "drift-a", Kind: api.EventStorage, Fields: map[string]any{"mounted": true, "healthy": false, "source": "9p://h:5640"}},
			"drift-a /cluster from 9p://h:5640 unhealthy"},
		{api.Event{Time: at, Node: "drift-a", Kind: api.EventNetboot, Fields: map[string]any{"mac": "52:54:00:00:00:01", "stage": "kernel"}},
			"drift-a netboot mac=52:54:00:00:00:01 stage=kernel"},
	}
	for _, tt := range tests {
		if got := eventSummary(tt.e); got != tt.want {
			t.Errorf("eventSummary(%s) = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestAddEventDropsRepeats(t *testing.T) {
	join := func(node string, sec int) api.Event {
		return api.Event{Time: topNow.Add(time.Duration(sec) * time.Second), Node: node, Kind: api.EventJoin, Fields: map[string]any{"member": "drift-c"}}
	}
	var feed []api.Event
	for _, e := range []api.Event{join("drift-a", 0), join("drift-b", 1), {Kind: api.EventLive}, join("drift-a", 300)} {
		feed = addEvent(feed, e)
	}
	if len(feed) != 2 || feed[0].Node != "drift-a" || !feed[1].Time.Equal(topNow.Add(300*time.Second)) {
		t.Errorf("feed = %v, want the first join and the one 5 minutes later", feed)
	}
	for i := range 2 * feedSize {
		feed = addEvent(feed, api.Event{Time: topNow.Add(time.Duration(i) * time.Hour), Kind: api.EventNetboot})
	}
	if len(feed) != feedSize {
		t.Errorf("feed holds %d events, want %d", len(feed), feedSize)
	}
}
