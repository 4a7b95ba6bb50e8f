package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/google/go-cmp/cmp"
)

// fakeUICluster is the cluster as drift ui sees it, with the calls it got.
type fakeUICluster struct {
	nodes      []api.Node
	jobs       []api.JobInfo
	events     string // JSON lines
	migrateErr error

	mu    sync.Mutex
	calls []string
	modes []api.ModeRequest
}

func (f *fakeUICluster) record(call string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call)
}

func (f *fakeUICluster) Nodes(context.Context) ([]api.Node, error) { return f.nodes, nil }
func (f *fakeUICluster) PS(context.Context) (api.PSResult, error) {
	return api.PSResult{Jobs: f.jobs}, nil
}
func (f *fakeUICluster) Events(ctx context.Context, q api.EventsQuery) (*api.EventStream, error) {
	return api.NewEventStream(io.NopCloser(strings.NewReader(f.events))), nil
}
func (f *fakeUICluster) Migrate(ctx context.Context, id string, req api.MigrateRequest) (api.MigrateResult, error) {
	f.record("migrate " + id + " " + req.To)
	return api.MigrateResult{Job: id, From: "drift-000001", To: req.To, Freeze: 1500 * time.Millisecond, Total: 2 * time.Second}, f.migrateErr
}
func (f *fakeUICluster) Signal(ctx context.Context, id string, sig int) error {
	f.record("signal " + id + " " + strconv.Itoa(sig))
	return nil
}
func (f *fakeUICluster) SetMode(ctx context.Context, node string, req api.ModeRequest) error {
	f.record("mode " + node)
	f.mu.Lock()
	f.modes = append(f.modes, req)
	f.mu.Unlock()
	return nil
}
func (f *fakeUICluster) Netboot(context.Context) (api.Netboot, error) {
	return api.Netboot{}, &api.StatusError{Code: 404, Msg: "this node is not a head", Err: api.ErrNotFound}
}
func (f *fakeUICluster) Storage(context.Context) ([]api.StorageStatus, error) {
	return []api.StorageStatus{{Node: "drift-000001", Mount: api.MountStatus{Mounted: true, Healthy: true}}}, nil
}

func testUICluster() *fakeUICluster {
	return &fakeUICluster{
		nodes: []api.Node{
			{Name: "drift-000001", State: api.NodeAlive, CPUs: 2, Load1: 1, MemTotal: 1000, MemFree: 250},
			{Name: "drift-000002", State: api.NodeAlive, CPUs: 1, Load1: 0.5, MemTotal: 1000, MemFree: 1000},
		},
		jobs:   []api.JobInfo{{ID: "000001-1", Name: "counter", Node: "drift-000001", State: api.JobRunning}},
		events: `{"time":"2026-01-01T00:00:00Z","node":"drift-000001","kind":"join","fields":{"member":"drift-000002"}}` + "\n",
	}
}

// clock is a time the test moves by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func getState(t *testing.T, h http.Handler) uiState {
	t.Helper()
	r := httptest.NewRequest("GET", "http://127.0.0.1:8470/api/state", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("GET /api/state = %d %s", w.Code, w.Body)
	}
	var st uiState
	if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
		t.Fatalf("GET /api/state: %v: %s", err, w.Body)
	}
	return st
}

func TestUIStateAndHistory(t *testing.T) {
	fc := testUICluster()
	s := newUIServer(fc, "10.77.0.1", "")
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s.now = clk.now
	ctx := context.Background()
	s.poll(ctx)
	st := getState(t, s)
	if len(st.Nodes) != 2 || len(st.Jobs) != 1 || st.Jobs[0].ID != "000001-1" {
		t.Fatalf("state has nodes %v and jobs %v, want 2 nodes and job 000001-1", st.Nodes, st.Jobs)
	}
	if !strings.Contains(st.NetbootError, "not a head") || len(st.Storage) != 1 {
		t.Errorf("netboot error %q, storage %v: want the refusal and one node's storage", st.NetbootError, st.Storage)
	}
	want := map[string][]uiSample{
		"drift-000001": {{T: clk.t.Unix(), Load: 0.5, Mem: 0.75}},
		"drift-000002": {{T: clk.t.Unix(), Load: 0.5, Mem: 0}},
	}
	if diff := cmp.Diff(want, st.History); diff != "" {
		t.Errorf("history after one poll (-want +got):\n%s", diff)
	}

	// Within uiSampleEvery no new point; after it, one.
	clk.t = clk.t.Add(5 * time.Second)
	s.poll(ctx)
	if n := len(getState(t, s).History["drift-000001"]); n != 1 {
		t.Errorf("after 5 s the history has %d points, want 1", n)
	}
	clk.t = clk.t.Add(5 * time.Second)
	s.poll(ctx)
	if n := len(getState(t, s).History["drift-000001"]); n != 2 {
		t.Errorf("after 10 s the history has %d points, want 2", n)
	}
	// An hour later the old points are gone; a node that left keeps its
	// points until they are an hour old.
	fc.nodes = fc.nodes[:1]
	clk.t = clk.t.Add(uiHistory - 5*time.Second)
	s.poll(ctx)
	h := getState(t, s).History
	if n := len(h["drift-000001"]); n != 2 {
		t.Errorf("an hour on, drift-000001's history has %d points, want 2 (the second and the new one)", n)
	}
	if n := len(h["drift-000002"]); n != 1 {
		t.Errorf("drift-000002 left: its history has %d points, want 1 (the second)", n)
	}
}

func TestUIIndexHoldsState(t *testing.T) {
	s := newUIServer(testUICluster(), "10.77.0.1", "")
	s.poll(context.Background())
	w := httptest.NewRecorder()
	s.ServeHTTP(w, httptest.NewRequest("GET", "http://localhost:8470/", nil))
	body := w.Body.String()
	if w.Code != http.StatusOK || !strings.Contains(body, `"name":"drift-000002"`) || !strings.Contains(body, `src="ui.js"`) {
		t.Errorf("GET / = %d, want the page with the state inline:\n%s", w.Code, body)
	}
	for _, p := range []string{"/ui.js", "/ui.css"} {
		w := httptest.NewRecorder()
		s.ServeHTTP(w, httptest.NewRequest("GET", "http://localhost:8470"+p, nil))
		if w.Code != http.StatusOK || w.Body.Len() < 100 {
			t.Errorf("GET %s = %d, %d bytes", p, w.Code, w.Body.Len())
		}
	}
}

// sseEvent reads one server-sent event.
func sseEvent(t *testing.T, r *bufio.Reader) (string, string) {
	t.Helper()
	var event, data string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("read the event stream: %v", err)
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "" && event != "":
			return event, data
		case strings.HasPrefix(line, "event: "):
			event = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			data = strings.TrimPrefix(line, "data: ")
		}
	}
}

func TestUIStream(t *testing.T) {
	fc := testUICluster()
	s := newUIServer(fc, "10.77.0.1", "")
	clk := &clock{t: time.Unix(1_800_000_000, 0)}
	s.now = clk.now
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.poll(ctx)
	srv := httptest.NewServer(s)
	defer srv.Close()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/api/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Fatalf("Content-Type %q, want text/event-stream", ct)
	}
	r := bufio.NewReader(resp.Body)
	ev, data := sseEvent(t, r)
	var st uiState
	if err := json.Unmarshal([]byte(data), &st); err != nil || ev != "state" || len(st.History) != 2 || len(st.Nodes) != 2 {
		t.Fatalf("first event %q (%v): %s; want the state with two nodes' history", ev, err, data)
	}

	// The job moves: the next poll sends a new point and the state with
	// the job on its new node, without the history.
	fc.jobs = []api.JobInfo{{ID: "000001-1", Name: "counter", Node: "drift-000002", State: api.JobRunning}}
	clk.t = clk.t.Add(uiSampleEvery)
	s.poll(ctx)
	ev, data = sseEvent(t, r)
	var pts map[string]uiSample
	if err := json.Unmarshal([]byte(data), &pts); err != nil || ev != "sample" || len(pts) != 2 {
		t.Fatalf("second event %q (%v): %s; want a sample of two nodes", ev, err, data)
	}
	ev, data = sseEvent(t, r)
	st = uiState{}
	if err := json.Unmarshal([]byte(data), &st); err != nil || ev != "state" {
		t.Fatalf("third event %q (%v): %s; want the state", ev, err, data)
	}
	if st.History != nil || len(st.Jobs) != 1 || st.Jobs[0].Node != "drift-000002" {
		t.Errorf("state after the move: jobs %v, history %v; want the job on drift-000002 and no history", st.Jobs, st.History)
	}
}

func TestUIToken(t *testing.T) {
	for _, tt := range []struct {
		name   string
		token  string
		url    string
		header map[string]string
		want   int
	}{
		{"loopback, no token", "", "http://127.0.0.1:8470/api/state", nil, 200},
		{"loopback by name", "", "http://localhost:8470/api/state", nil, 200},
		{"loopback, v6", "", "http://[::1]:8470/api/state", nil, 200},
		{"loopback, another site's name", "", "http://rebound.example:8470/api/state", nil, 403},
		{"token, none given", "s3cret", "http://10.0.0.5:8470/api/state", nil, 403},
		{"token, a wrong one", "s3cret", "http://10.0.0.5:8470/api/state?token=guess", nil, 403},
		{"token in the address of the page", "s3cret", "http://10.0.0.5:8470/?token=s3cret", nil, 303},
		{"token in the address of the api", "s3cret", "http://10.0.0.5:8470/api/state?token=s3cret", nil, 200},
		{"token in the cookie", "s3cret", "http://10.0.0.5:8470/api/state", map[string]string{"Cookie": uiTokenCookie + "=s3cret"}, 200},
		{"a wrong cookie", "s3cret", "http://10.0.0.5:8470/api/state", map[string]string{"Cookie": uiTokenCookie + "=guess"}, 403},
		{"token in a header", "s3cret", "http://10.0.0.5:8470/api/state", map[string]string{"Authorization": "token s3cret"}, 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newUIServer(testUICluster(), "10.77.0.1", tt.token)
			r := httptest.NewRequest("GET", tt.url, nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Fatalf("GET %s = %d %s, want %d", tt.url, w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
			if tt.want == 303 {
				c := w.Result().Cookies()
				if len(c) != 1 || c[0].Name != uiTokenCookie || c[0].Value != tt.token || !c[0].HttpOnly {
					t.Errorf("cookies set: %v, want %s=%s, HttpOnly", c, uiTokenCookie, tt.token)
				}
				if loc := w.Header().Get("Location"); loc != "/" {
					t.Errorf("redirected to %q, want / (the token out of the address)", loc)
				}
			}
		})
	}
}

func TestUIActions(t *testing.T) {
	ptrue, pfalse := ptr(true), ptr(false)
	for _, tt := range []struct {
		name       string
		path, body string
		header     map[string]string // beside Content-Type: application/json
		migrateErr error
		want       int
		wantCalls  []string
		wantMode   *api.ModeRequest
	}{
		{"drop a job on a node", "/api/migrate", `{"job":"000001-1","to":"drift-000002"}`, nil, nil, 200, []string{"migrate 000001-1 drift-000002"}, nil},
		{"migrate without a node", "/api/migrate", `{"job":"000001-1"}`, nil, nil, 400, nil, nil},
		{"migrate refused by the target", "/api/migrate", `{"job":"000001-1","to":"drift-000002"}`, nil,
			&api.StatusError{Code: 409, Msg: "drift-000002 is blocked", Err: api.ErrConflict}, 409, []string{"migrate 000001-1 drift-000002"}, nil},
		{"migrate, the cluster away", "/api/migrate", `{"job":"000001-1","to":"drift-000002"}`, nil,
			errors.New("dial tcp: no route to host"), 502, []string{"migrate 000001-1 drift-000002"}, nil},
		{"kill", "/api/kill", `{"job":"000001-1"}`, nil, nil, 200, []string{"signal 000001-1 15"}, nil},
		{"kill -KILL", "/api/kill", `{"job":"000001-1","signal":"KILL"}`, nil, nil, 200, []string{"signal 000001-1 9"}, nil},
		{"kill, unknown signal", "/api/kill", `{"job":"000001-1","signal":"BOGUS"}`, nil, nil, 400, nil, nil},
		{"block", "/api/mode", `{"node":"drift-000002","mode":"block"}`, nil, nil, 200, []string{"mode drift-000002"}, &api.ModeRequest{Blocked: ptrue}},
		{"drain", "/api/mode", `{"node":"drift-000002","mode":"drain"}`, nil, nil, 200, []string{"mode drift-000002"}, &api.ModeRequest{Draining: ptrue}},
		{"unblock", "/api/mode", `{"node":"drift-000002","mode":"unblock"}`, nil, nil, 200, []string{"mode drift-000002"}, &api.ModeRequest{Blocked: pfalse, Draining: pfalse}},
		{"unknown mode", "/api/mode", `{"node":"drift-000002","mode":"reboot"}`, nil, nil, 400, nil, nil},
		{"not JSON", "/api/kill", `job=000001-1`, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, nil, 415, nil, nil},
		{"from another site", "/api/kill", `{"job":"000001-1"}`, map[string]string{"Origin": "http://evil.example"}, nil, 403, nil, nil},
		{"from the page itself", "/api/kill", `{"job":"000001-1"}`, map[string]string{"Origin": "http://127.0.0.1:8470"}, nil, 200, []string{"signal 000001-1 15"}, nil},
		{"GET is no action", "/api/kill", ``, map[string]string{"method": "GET"}, nil, 405, nil, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fc := testUICluster()
			fc.migrateErr = tt.migrateErr
			s := newUIServer(fc, "10.77.0.1", "")
			method := "POST"
			if m := tt.header["method"]; m != "" {
				method = m
			}
			r := httptest.NewRequest(method, "http://127.0.0.1:8470"+tt.path, strings.NewReader(tt.body))
			r.Header.Set("Content-Type", "application/json")
			for k, v := range tt.header {
				if k != "method" {
					r.Header.Set(k, v)
				}
			}
			w := httptest.NewRecorder()
			s.ServeHTTP(w, r)
			if w.Code != tt.want {
				t.Errorf("%s %s %s = %d %s, want %d", method, tt.path, tt.body, w.Code, strings.TrimSpace(w.Body.String()), tt.want)
			}
			if diff := cmp.Diff(tt.wantCalls, fc.calls); diff != "" {
				t.Errorf("calls to the cluster (-want +got):\n%s", diff)
			}
			if tt.wantMode != nil && (len(fc.modes) != 1 || !cmp.Equal(*tt.wantMode, fc.modes[0])) {
				t.Errorf("modes sent %+v, want %+v", fc.modes, *tt.wantMode)
			}
			if w.Code == 200 || w.Header().Get("Content-Type") == "application/json" {
				var res uiResult
				if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil || (w.Code == 200) != (res.Error == "") {
					t.Errorf("answer %s (%v): want a message on success, an error otherwise", w.Body, err)
				}
			}
		})
	}
}

func TestUIFeed(t *testing.T) {
	fc := testUICluster()
	s := newUIServer(fc, "10.77.0.1", "")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.run(ctx) }()
	defer func() { cancel(); <-done }()
	for until := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st := getState(t, s); len(st.Events) == 1 && st.Events[0].Str("member") == "drift-000002" {
			return
		}
		if time.Now().After(until) {
			t.Fatalf("the state's events are %v, want the join of drift-000002", getState(t, s).Events)
		}
	}
}

func TestUIURL(t *testing.T) {
	for _, tt := range []struct {
		addr     string
		loopback bool
		token    string
		want     string
	}{
		{"127.0.0.1:8470", true, "", "http://127.0.0.1:8470/"},
		{"[::1]:8470", true, "", "http://[::1]:8470/"},
		{"10.0.0.5:8470", false, "abc", "http://10.0.0.5:8470/?token=abc"},
	} {
		a, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != tt.loopback {
			t.Errorf("isLoopback(%s) = %v, want %v", tt.addr, got, tt.loopback)
		}
		if got := uiURL(a, tt.token); got != tt.want {
			t.Errorf("uiURL(%s, %q) = %q, want %q", tt.addr, tt.token, got, tt.want)
		}
	}
}
