package api

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"
)

// echoRoutes has a stream endpoint that answers each frame with the same
// payload as stdout, then an exit frame on stdin EOF; and a plain call.
func echoRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/echo": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var req struct{ Greeting string }
			json.NewDecoder(r.Body).Decode(&req)
			fc := Upgrade(w, r)
			if fc == nil {
				return
			}
			defer fc.Close()
			fc.Write(FrameInfo, []byte(req.Greeting))
			for {
				f, err := fc.Read()
				if err != nil {
					return
				}
				if f.Type == FrameStdinEOF {
					fc.WriteJSON(FrameExit, map[string]int{"code": 3})
					return
				}
				fc.Write(FrameStdout, f.Data)
			}
		}),
		"POST /v1/sum": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var in []int
			if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
				http.Error(w, "want a JSON list of numbers", http.StatusBadRequest)
				return
			}
			sum := 0
			for _, n := range in {
				sum += n
			}
			WriteJSON(w, sum)
		}),
	}
}

func TestStreamAndCall(t *testing.T) {
	key := mustKey(t)
	sock, tcp, _ := startServerRoutes(t, key, echoRoutes())
	remote, err := Remote(tcp, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		c    *Client
	}{{"unix", Local(sock)}, {"tls", remote}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			fc, err := tc.c.Stream(ctx, "/v1/echo", map[string]string{"Greeting": "hi"})
			if err != nil {
				t.Fatalf("Stream: %v", err)
			}
			defer fc.Close()
			if f, err := fc.Read(); err != nil || f.Type != FrameInfo || string(f.Data) != "hi" {
				t.Fatalf("first frame = %c %q, %v; want info hi", f.Type, f.Data, err)
			}
			for _, msg := range []string{"one", "two"} {
				fc.Write(FrameStdin, []byte(msg))
				if f, err := fc.Read(); err != nil || f.Type != FrameStdout || string(f.Data) != msg {
					t.Fatalf("echo of %q = %c %q, %v", msg, f.Type, f.Data, err)
				}
			}
			fc.Write(FrameStdinEOF, nil)
			if f, err := fc.Read(); err != nil || f.Type != FrameExit {
				t.Fatalf("after EOF got %c %q, %v; want exit", f.Type, f.Data, err)
			}
			var sum int
			if err := tc.c.Call(ctx, http.MethodPost, "/v1/sum", []int{1, 2, 3}, &sum); err != nil || sum != 6 {
				t.Errorf("Call(sum 1 2 3) = %d, %v; want 6", sum, err)
			}
			var se *StatusError
			if err := tc.c.Call(ctx, http.MethodPost, "/v1/sum", "x", &sum); !errors.As(err, &se) || se.Code != http.StatusBadRequest {
				t.Errorf("Call(sum bad input) error = %v, want a 400 StatusError", err)
			}
			if _, err := tc.c.Stream(ctx, "/v1/sum", nil); !errors.As(err, &se) {
				t.Errorf("Stream(not a stream endpoint) error = %v, want a StatusError", err)
			}
		})
	}
}

func TestFrameLimit(t *testing.T) {
	fc := &FrameConn{}
	if err := fc.Write(FrameStdout, make([]byte, MaxFrame+1)); err == nil {
		t.Error("Write(oversized frame) succeeded, want an error")
	}
}

// A peer that takes the connection and never answers does not hold a
// stream's opening for ever.
func TestStreamOpenDeadline(t *testing.T) {
	defer func(d time.Duration) { streamOpenTimeout = d }(streamOpenTimeout)
	streamOpenTimeout = 300 * time.Millisecond
	sock := filepath.Join(t.TempDir(), "silent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close() // accepted, never answered
		}
	}()
	start := time.Now()
	_, err = Local(sock).Stream(context.Background(), "/v1/jobs/x-1/attach", struct{}{})
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("Stream to a silent peer = %v after %s, want an error within its deadline", err, time.Since(start))
	}
}
