package bench

import (
	"testing"
	"time"
)

func TestLogTime(t *testing.T) {
	log := `time=2026-12-02T11:00:01.500Z level=INFO msg="job recovered" job=d1-31 node=a
time=2026-12-02T11:00:02.250Z level=INFO msg="job recovered" job=d1-3 node=b
time=2026-12-02T11:00:09.000Z level=WARN msg="recovered job caught up: what it writes now was never shown" job=d1-3`
	for _, tt := range []struct {
		job, sub string
		want     string
	}{
		{"d1-3", `msg="job recovered"`, "2026-12-02T11:00:02.25Z"},
		{"d1-31", `msg="job recovered"`, "2026-12-02T11:00:01.5Z"},
		{"d1-3", "caught up", "2026-12-02T11:00:09Z"},
		{"d1-31", "caught up", "0001-01-01T00:00:00Z"},
	} {
		if got := logTime(log, tt.job, tt.sub).Format(time.RFC3339Nano); got != tt.want {
			t.Errorf("logTime(%s, %q) = %s, want %s", tt.job, tt.sub, got, tt.want)
		}
	}
}

func TestParseCheckpointLines(t *testing.T) {
	log := `time=2026-12-02T11:00:01.500Z level=INFO msg="job not checkpointed" job=d1-3 why="checkpoints are off"
time=2026-12-02T11:00:31.500Z level=INFO msg=checkpoint job=d1-4 seq=1 kind=full bytes=67633152 levels=1 chain_bytes=67633152 freeze=1.2s publish=4.5s copy_cpu=300ms lost=2.5s why=first cost_base=450ms cost_per_mib=31ms
time=2026-12-02T11:01:31.500Z level=INFO msg=checkpoint job=d1-4 seq=2 kind=increment bytes=1048576 levels=2 chain_bytes=68681728 freeze=300ms publish=500ms copy_cpu=20ms lost=400ms why="" cost_base=420ms cost_per_mib=33ms`
	got := parseCheckpointLines(log)
	want := []ckLine{
		{freeze: 1200 * time.Millisecond, publish: 4500 * time.Millisecond, copyCPU: 300 * time.Millisecond, lost: 2500 * time.Millisecond, bytes: 67633152, full: true, base: 450 * time.Millisecond, perMiB: 31 * time.Millisecond},
		{freeze: 300 * time.Millisecond, publish: 500 * time.Millisecond, copyCPU: 20 * time.Millisecond, lost: 400 * time.Millisecond, bytes: 1 << 20, base: 420 * time.Millisecond, perMiB: 33 * time.Millisecond},
	}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if s := runSizes(got); s != "full 64.5 MiB (cost 2.50 s), increment 1.0 MiB (cost 0.40 s)" {
		t.Errorf("runSizes = %q", s)
	}
}
