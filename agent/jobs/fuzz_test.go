package jobs

import (
	"bytes"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/driftcluster/drift/agent/api"
)

// Every request body an agent takes from its peers and from drift, on a
// node that runs no job: any bytes get an answer (an error status for
// nonsense), never a panic. Routes that start a job are left out: a
// valid body would run it.
func FuzzAPIBodies(f *testing.F) {
	routes := []string{
		"POST /v1/jobs/{id}/migrate",
		"POST /v1/jobs/{id}/admit",
		"POST /v1/jobs/{id}/restore",
		"POST /v1/jobs/{id}/commit",
		"POST /v1/jobs/{id}/discard",
		"POST /v1/jobs/{id}/signal",
		"POST /v1/jobs/{id}/attach",
		"POST /v1/jobs/{id}/stint",
		"GET /v1/jobs/{id}/why",
		"POST /v1/jobs/{id}/abandon",
	}
	m := &Manager{Self: "drift-aaaaaa", Peers: onlyAlive{"drift-aaaaaa"}, StateDir: f.TempDir(), SharedRoot: f.TempDir()}
	m.init()
	h := (&api.Server{Routes: m.Routes()}).Handler()
	f.Add(uint8(0), "aaaaaa-1", []byte(`{"to":"drift-bbbbbb"}`))
	f.Add(uint8(1), "bbbbbb-2", []byte(`{"job":"bbbbbb-2","expect":1,"home":"drift-bbbbbb","epoch":2,"cpuinfo":null}`))
	f.Add(uint8(2), "aaaaaa-1", []byte(`{"spec":{"argv":["sh"]},"home":"drift-aaaaaa","epoch":2,"stdio":[1,2,3],"stdin":"aGk="}`))
	f.Add(uint8(2), "bbbbbb-1", []byte(`{"spec":{"argv":["sh"]},"home":"drift-bbbbbb","epoch":2}`))
	f.Add(uint8(5), "aaaaaa-1", []byte(`{"signal":9}`))
	f.Add(uint8(7), "aaaaaa-1", []byte(`{"epoch":1,"node":"drift-bbbbbb"}`))
	f.Fuzz(func(t *testing.T, route uint8, id string, body []byte) {
		pattern := routes[int(route)%len(routes)]
		var method, path string
		for i := range pattern {
			if pattern[i] == ' ' {
				method, path = pattern[:i], pattern[i+1:]
				break
			}
		}
		path = "/v1/jobs/" + url.PathEscape(id) + path[len("/v1/jobs/{id}"):]
		req := httptest.NewRequest(method, "http://drift"+path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code < 200 || rec.Code > 599 {
			t.Fatalf("%s %s: status %d", method, path, rec.Code)
		}
	})
}
