package logring

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// writeTimeout is how long a reader of the log may keep one line waiting
// before it is disconnected: a stalled `drift logs -f` never holds the
// agent.
const writeTimeout = 10 * time.Second

// Server serves a Ring at GET /v1/nodes/{name}/logs, and forwards a
// request for another node's log to it.
type Server struct {
	Ring   *Ring                                  // required
	Self   string                                 // this node's name; "self" in a path names it too
	Client func(node string) (*api.Client, error) // reaches another node; nil: only this node's log is served
}

// Routes are the log endpoints, for api.Server.Routes.
func (s *Server) Routes() map[string]http.Handler {
	return map[string]http.Handler{"GET /v1/nodes/{name}/logs": http.HandlerFunc(s.handle)}
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	q, err := api.ParseLogsQuery(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	name := r.PathValue("name")
	if name != "self" && name != s.Self {
		s.forward(w, r, name, q)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	send := func(lines ...string) error {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		for _, l := range lines {
			if _, err := io.WriteString(w, l+"\n"); err != nil {
				return err
			}
		}
		return rc.Flush()
	}
	if !q.Follow {
		send(s.Ring.Tail(q.Lines)...)
		return
	}
	old, f := s.Ring.Follow(q.Lines)
	defer f.Close()
	if err := send(old...); err != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case l := <-f.Lines():
			if err := send(l); err != nil {
				return
			}
		}
	}
}

// forward relays node's log from that node's agent.
func (s *Server) forward(w http.ResponseWriter, r *http.Request, node string, q api.LogsQuery) {
	if s.Client == nil {
		http.Error(w, "this agent serves only its own log", http.StatusNotFound)
		return
	}
	c, err := s.Client(node)
	if err != nil {
		http.Error(w, fmt.Sprintf("logs of %s: %v", node, err), http.StatusNotFound)
		return
	}
	body, err := c.Logs(r.Context(), node, q)
	if err != nil {
		http.Error(w, fmt.Sprintf("logs of %s: %v", node, err), http.StatusBadGateway)
		return
	}
	defer body.Close()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), maxLine+64)
	for sc.Scan() {
		rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := fmt.Fprintf(w, "%s\n", sc.Bytes()); err != nil {
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
	}
}
