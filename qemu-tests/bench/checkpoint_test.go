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
