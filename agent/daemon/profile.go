package daemon

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// profileRoutes serve drift profile: a CPU profile of this agent, or,
// forwarded, of another node's.
func (a *agent) profileRoutes(p *peers) map[string]http.Handler {
	return map[string]http.Handler{"GET /v1/nodes/{name}/profile": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		secs, err := strconv.Atoi(r.URL.Query().Get("seconds"))
		d := time.Duration(secs) * time.Second
		if err != nil || d <= 0 || d > api.MaxProfile {
			http.Error(w, fmt.Sprintf("profile: seconds= wants 1 to %d", int(api.MaxProfile/time.Second)), http.StatusBadRequest)
			return
		}
		if name := r.PathValue("name"); name != "self" && name != a.node.Name {
			c, err := p.Client(name)
			if err != nil {
				http.Error(w, fmt.Sprintf("profile of %s: %v", name, err), http.StatusNotFound)
				return
			}
			body, err := c.Profile(r.Context(), name, d)
			if err != nil {
				http.Error(w, fmt.Sprintf("profile of %s: %v", name, err), http.StatusBadGateway)
				return
			}
			defer body.Close()
			w.Header().Set("Content-Type", "application/octet-stream")
			io.Copy(w, body)
			return
		}
		var buf bytes.Buffer
		if err := pprof.StartCPUProfile(&buf); err != nil { // Go takes one at a time
			http.Error(w, "profile: this agent is taking another profile; try again when it is done", http.StatusConflict)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
		}
		pprof.StopCPUProfile()
		if r.Context().Err() != nil {
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write(buf.Bytes())
	})}
}
