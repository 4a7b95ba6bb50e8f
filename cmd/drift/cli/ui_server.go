package cli

import (
	"bytes"
	"context"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

//go:embed ui
var uiFiles embed.FS

// uiStateMark is where the page takes the state inline: encoding/json
// escapes <, > and & in strings, so the JSON cannot end the script
// element. (No html/template: its reflection keeps every method of every
// type in the binary, some 3.7 MB.)
const uiStateMark = "/*STATE*/null"

// uiCluster is what drift ui asks of the cluster; *api.Client is one.
type uiCluster interface {
	Nodes(ctx context.Context) ([]api.Node, error)
	PS(ctx context.Context) (api.PSResult, error)
	Events(ctx context.Context, q api.EventsQuery) (*api.EventStream, error)
	Migrate(ctx context.Context, id string, req api.MigrateRequest) (api.MigrateResult, error)
	Signal(ctx context.Context, id string, sig int) error
	SetMode(ctx context.Context, node string, req api.ModeRequest) error
	Netboot(ctx context.Context) (api.Netboot, error)
	Storage(ctx context.Context) ([]api.StorageStatus, error)
}

// How often drift ui asks the cluster, and how much history it keeps.
const (
	uiPollEvery   = time.Second      // nodes and jobs
	uiSlowEvery   = 5                // netboot and storage: every this many polls
	uiSampleEvery = 10 * time.Second // one point of a node's load and memory chart
	uiHistory     = time.Hour        // the charts' span
	uiCallTimeout = 10 * time.Second // a poll's calls
	uiMoveTimeout = 5 * time.Minute  // a migration asked from the page
	uiSubQueue    = 8                // messages a browser may fall behind before it is dropped (it reconnects)
	uiTokenCookie = "drift_ui_token"
)

// uiState is what the page shows: GET /api/state answers it, the event
// stream sends it at every poll (History only in its first message;
// then a "sample" message adds each new point).
type uiState struct {
	Time         time.Time             `json:"time"`
	Cluster      string                `json:"cluster"` // the agent drift ui asks
	Nodes        []api.Node            `json:"nodes"`
	Jobs         []api.JobInfo         `json:"jobs"`
	Missing      []api.NodeError       `json:"missing,omitempty"` // nodes that did not answer for their jobs
	Error        string                `json:"error,omitempty"`   // why nodes or jobs are missing
	Netboot      *api.Netboot          `json:"netboot,omitempty"`
	NetbootError string                `json:"netboot_error,omitempty"`
	Storage      []api.StorageStatus   `json:"storage,omitempty"`
	StorageError string                `json:"storage_error,omitempty"`
	Events       []api.Event           `json:"events"`
	History      map[string][]uiSample `json:"history,omitempty"` // node name: oldest first
}

// uiSample is one point of a node's charts.
type uiSample struct {
	T    int64   `json:"t"`    // Unix seconds
	Load float64 `json:"load"` // load1 per core
	Mem  float64 `json:"mem"`  // memory in use, 0 to 1
}

// uiMsg is one server-sent event.
type uiMsg struct {
	event string
	data  []byte
}

// uiServer is drift ui's HTTP handler and its one poller of the cluster.
type uiServer struct {
	c       uiCluster
	cluster string // for the page's title
	token   string // "": loopback, no token asked
	now     func() time.Time
	mux     *http.ServeMux
	feed    feed
	kick    chan struct{} // poll now: an action just changed something

	mu      sync.Mutex
	state   uiState // the newest, History left out
	history map[string][]uiSample
	polls   int
	subs    map[chan uiMsg]struct{}
}

func newUIServer(c uiCluster, cluster, token string) *uiServer {
	s := &uiServer{c: c, cluster: cluster, token: token, now: time.Now, kick: make(chan struct{}, 1),
		history: map[string][]uiSample{}, subs: map[chan uiMsg]struct{}{}}
	s.state.Cluster = cluster
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.index)
	m.HandleFunc("GET /ui.js", uiStatic("ui/ui.js", "text/javascript; charset=utf-8"))
	m.HandleFunc("GET /ui.css", uiStatic("ui/ui.css", "text/css; charset=utf-8"))
	m.HandleFunc("GET /api/state", s.getState)
	m.HandleFunc("GET /api/stream", s.stream)
	m.HandleFunc("POST /api/migrate", s.migrate)
	m.HandleFunc("POST /api/kill", s.kill)
	m.HandleFunc("POST /api/mode", s.mode)
	s.mux = m
	return s
}

// run polls the cluster every second, and follows its events, until ctx
// ends.
func (s *uiServer) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); s.feed.follow(ctx, s.c) }()
	t := time.NewTicker(uiPollEvery)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

// poll asks the cluster for its nodes and jobs (and now and then its
// netboot and storage), records a chart point when one is due, and sends
// the state to every browser.
func (s *uiServer) poll(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, uiCallTimeout)
	defer cancel()
	s.mu.Lock()
	st := s.state
	slow := s.polls%uiSlowEvery == 0
	s.polls++
	s.mu.Unlock()

	st.Time = s.now()
	st.Error = ""
	nodes, err := s.c.Nodes(ctx)
	if err == nil {
		var ps api.PSResult
		ps, err = s.c.PS(ctx)
		st.Nodes, st.Jobs, st.Missing = nodes, ps.Jobs, ps.Unanswered
	}
	if err != nil {
		st.Error = err.Error()
	}
	if slow {
		st.Netboot, st.NetbootError = nil, ""
		if nb, err := s.c.Netboot(ctx); err != nil {
			st.NetbootError = err.Error()
		} else {
			st.Netboot = &nb
		}
		st.StorageError = ""
		if sto, err := s.c.Storage(ctx); err != nil {
			st.StorageError = err.Error()
		} else {
			st.Storage = sto
		}
	}
	st.Events = s.feed.events()
	if st.Events == nil {
		st.Events = []api.Event{}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.state = st
	if pts := s.sample(st); len(pts) > 0 {
		s.send(uiMsg{"sample", mustJSON(pts)})
	}
	s.send(uiMsg{"state", mustJSON(st)})
}

// sample records a chart point for each node when the last is
// uiSampleEvery old, drops points older than uiHistory, and returns the
// new points. s.mu is held.
func (s *uiServer) sample(st uiState) map[string]uiSample {
	now := st.Time
	pts := map[string]uiSample{}
	for _, n := range st.Nodes {
		h := s.history[n.Name]
		if n.State == api.NodeDead || (len(h) > 0 && now.Unix()-h[len(h)-1].T < int64(uiSampleEvery/time.Second)) {
			continue
		}
		p := uiSample{T: now.Unix()}
		if n.CPUs > 0 {
			p.Load = n.Load1 / float64(n.CPUs)
		}
		if n.MemTotal > 0 && n.MemFree <= n.MemTotal {
			p.Mem = float64(n.MemTotal-n.MemFree) / float64(n.MemTotal)
		}
		s.history[n.Name] = append(h, p)
		pts[n.Name] = p
	}
	old := now.Add(-uiHistory).Unix()
	for name, h := range s.history {
		i := 0
		for i < len(h) && h[i].T < old {
			i++
		}
		if i == len(h) {
			delete(s.history, name)
		} else if i > 0 {
			s.history[name] = append([]uiSample(nil), h[i:]...)
		}
	}
	return pts
}

// send queues m for every browser; one whose queue is full is dropped
// (its EventSource connects again). s.mu is held.
func (s *uiServer) send(m uiMsg) {
	for ch := range s.subs {
		select {
		case ch <- m:
		default:
			delete(s.subs, ch)
			close(ch)
		}
	}
}

// current returns the newest state with the whole history.
func (s *uiServer) current() uiState {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.state
	st.History = make(map[string][]uiSample, len(s.history))
	for k, v := range s.history {
		st.History[k] = append([]uiSample(nil), v...)
	}
	if st.Nodes == nil {
		st.Nodes = []api.Node{}
	}
	if st.Jobs == nil {
		st.Jobs = []api.JobInfo{}
	}
	if st.Events == nil {
		st.Events = []api.Event{}
	}
	return st
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // the types here always marshal
	}
	return b
}

// index is the page, with the newest state in it, so that it shows the
// cluster at once (and to a reader of its DOM that runs no event stream).
func (s *uiServer) index(w http.ResponseWriter, r *http.Request) {
	page, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	page = bytes.Replace(page, []byte(uiStateMark), mustJSON(s.current()), 1)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write(page)
}

// uiStatic serves an embedded file as it is.
func uiStatic(name, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := uiFiles.ReadFile(name)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ctype)
		w.Write(b)
	}
}

func (s *uiServer) getState(w http.ResponseWriter, r *http.Request) {
	api.WriteJSON(w, s.current())
}

// stream is GET /api/stream: server-sent events, the whole state (with
// history) at once, then "state" at every poll and "sample" for every
// new chart point.
func (s *uiServer) stream(w http.ResponseWriter, r *http.Request) {
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan uiMsg, uiSubQueue)
	s.mu.Lock()
	s.subs[ch] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if _, ok := s.subs[ch]; ok {
			delete(s.subs, ch)
			close(ch)
		}
		s.mu.Unlock()
	}()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	rc := http.NewResponseController(w)
	write := func(m uiMsg) error {
		rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", m.event, m.data); err != nil {
			return err
		}
		fl.Flush()
		return nil
	}
	if write(uiMsg{"state", mustJSON(s.current())}) != nil {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case m, ok := <-ch:
			if !ok || write(m) != nil {
				return
			}
		}
	}
}

// uiAction is the body of the page's POSTs.
type uiAction struct {
	Job    string `json:"job,omitempty"`
	To     string `json:"to,omitempty"`     // migrate: the node
	Signal string `json:"signal,omitempty"` // kill: "" is TERM
	Node   string `json:"node,omitempty"`   // mode
	Mode   string `json:"mode,omitempty"`   // block, drain or unblock
}

// uiResult is what an action answers: Message for the page's status
// line, or Error.
type uiResult struct {
	Message string             `json:"message,omitempty"`
	Error   string             `json:"error,omitempty"`
	Migrate *api.MigrateResult `json:"migrate,omitempty"`
}

func (s *uiServer) readAction(w http.ResponseWriter, r *http.Request) (uiAction, bool) {
	var a uiAction
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&a); err != nil {
		uiReply(w, http.StatusBadRequest, uiResult{Error: "read the request: " + err.Error()})
		return a, false
	}
	return a, true
}

// POST /api/migrate {"job":ID,"to":NODE}: what dropping a job on a node sends.
func (s *uiServer) migrate(w http.ResponseWriter, r *http.Request) {
	a, ok := s.readAction(w, r)
	if !ok {
		return
	}
	if a.Job == "" || a.To == "" {
		uiReply(w, http.StatusBadRequest, uiResult{Error: `want {"job": ID, "to": NODE}`})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), uiMoveTimeout)
	defer cancel()
	res, err := s.c.Migrate(ctx, a.Job, api.MigrateRequest{To: a.To})
	s.done(w, err, uiResult{Migrate: &res, Message: fmt.Sprintf("%s moved %s → %s: frozen %s, total %s",
		res.Job, res.From, res.To, res.Freeze.Round(time.Millisecond), res.Total.Round(time.Millisecond))})
}

// POST /api/kill {"job":ID,"signal":"TERM"}.
func (s *uiServer) kill(w http.ResponseWriter, r *http.Request) {
	a, ok := s.readAction(w, r)
	if !ok {
		return
	}
	if a.Signal == "" {
		a.Signal = "TERM"
	}
	sig, err := parseSignal(a.Signal)
	if err != nil || a.Job == "" {
		uiReply(w, http.StatusBadRequest, uiResult{Error: fmt.Sprintf(`want {"job": ID, "signal": NAME}: signal %q`, a.Signal)})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), uiCallTimeout)
	defer cancel()
	err = s.c.Signal(ctx, a.Job, int(sig))
	s.done(w, err, uiResult{Message: fmt.Sprintf("sent SIG%s to %s", strings.TrimPrefix(strings.ToUpper(a.Signal), "SIG"), a.Job)})
}

// uiModes are the modes a node can be put in from the page.
var uiModes = map[string]api.ModeRequest{
	"block":   {Blocked: ptr(true)},
	"drain":   {Draining: ptr(true)},
	"unblock": {Blocked: ptr(false), Draining: ptr(false)},
}

// POST /api/mode {"node":NODE,"mode":"block"|"drain"|"unblock"}.
func (s *uiServer) mode(w http.ResponseWriter, r *http.Request) {
	a, ok := s.readAction(w, r)
	if !ok {
		return
	}
	m, known := uiModes[a.Mode]
	if !known || a.Node == "" {
		uiReply(w, http.StatusBadRequest, uiResult{Error: `want {"node": NODE, "mode": "block", "drain" or "unblock"}`})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), uiCallTimeout)
	defer cancel()
	err := s.c.SetMode(ctx, a.Node, m)
	s.done(w, err, uiResult{Message: a.Mode + " " + a.Node})
}

// done answers an action: the cluster's refusal with its status, or ok;
// then the page gets a fresh state at once.
func (s *uiServer) done(w http.ResponseWriter, err error, ok uiResult) {
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if err == nil {
		uiReply(w, http.StatusOK, ok)
		return
	}
	code := http.StatusBadGateway // the cluster could not be asked
	var se *api.StatusError
	if errors.As(err, &se) && se.Code >= 400 && se.Code < 500 {
		code = se.Code
	}
	uiReply(w, code, uiResult{Error: err.Error()})
}

func uiReply(w http.ResponseWriter, code int, res uiResult) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(res)
}

// ServeHTTP lets in who may come: on loopback, requests that name a
// loopback host (a page of another site that rebinds its name to
// 127.0.0.1 is turned away); elsewhere, those with the token (in the
// address, once, which sets a cookie; or the cookie; or an
// "Authorization: token T" header). An action must come as JSON from
// the page's own origin, which a form of another site cannot send.
func (s *uiServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s.token == "" {
		if !loopbackHost(r.Host) {
			http.Error(w, "drift ui listens on loopback: open it as http://127.0.0.1:PORT or http://localhost:PORT", http.StatusForbidden)
			return
		}
	} else if q := r.URL.Query().Get("token"); q != "" && s.tokenIs(q) {
		http.SetCookie(w, &http.Cookie{Name: uiTokenCookie, Value: s.token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
		if r.Method == http.MethodGet && r.URL.Path == "/" {
			http.Redirect(w, r, "/", http.StatusSeeOther) // the token leaves the address bar
			return
		}
	} else if !s.tokenIs(s.presented(r)) {
		http.Error(w, "drift ui needs its token: open the address it printed at start (…/?token=…)", http.StatusForbidden)
		return
	}
	if r.Method == http.MethodPost {
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			http.Error(w, "actions are JSON (Content-Type: application/json)", http.StatusUnsupportedMediaType)
			return
		}
		if o := r.Header.Get("Origin"); o != "" && o != "http://"+r.Host {
			http.Error(w, "actions come from drift ui's own page, not from "+o, http.StatusForbidden)
			return
		}
	}
	s.mux.ServeHTTP(w, r)
}

// presented is the token the request carries, from its cookie or header.
func (s *uiServer) presented(r *http.Request) string {
	if c, err := r.Cookie(uiTokenCookie); err == nil {
		return c.Value
	}
	if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "token "); ok {
		return t
	}
	return ""
}

func (s *uiServer) tokenIs(t string) bool {
	return t != "" && subtle.ConstantTimeCompare([]byte(t), []byte(s.token)) == 1
}

// loopbackHost says whether a Host header names this machine's loopback.
func loopbackHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
