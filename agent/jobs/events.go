package jobs

import (
	"errors"

	"github.com/driftcluster/drift/agent/api"
)

// migrated records a migration from here in the event stream: its
// result, freeze and total time and bytes, or why it failed.
func (m *Manager) migrated(id string, req api.MigrateRequest, res api.MigrateResult, err error) {
	if m.Event == nil {
		return
	}
	f := map[string]any{"job": id, "to": req.To, "result": api.MigrationOK}
	if res.To != "" {
		f["to"] = res.To
	}
	if req.Reason != "" {
		f["reason"] = req.Reason
	}
	if res.Freeze > 0 || res.Total > 0 {
		f["freeze_seconds"] = res.Freeze.Seconds()
		f["total_seconds"] = res.Total.Seconds()
		f["bytes"] = res.Bytes
		f["rounds"] = res.Rounds
	}
	switch {
	case errors.Is(err, ErrTargetRefused):
		f["result"], f["error"] = api.MigrationRefused, err.Error()
	case err != nil:
		f["result"], f["error"] = api.MigrationFailed, err.Error()
	}
	m.Event(api.EventMigration, f)
}

// event records an event of the cluster's stream, if there is one.
func (m *Manager) event(kind string, f map[string]any) {
	if m.Event != nil {
		m.Event(kind, f)
	}
}
