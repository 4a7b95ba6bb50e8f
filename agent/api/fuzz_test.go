package api

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// A stream of any bytes reads as frames within the limit, then an error:
// never a panic, never a frame over MaxFrame.
func FuzzFrames(f *testing.F) {
	frame := func(t byte, data string) []byte {
		var hdr [5]byte
		hdr[0] = t
		binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
		return append(hdr[:], data...)
	}
	f.Add(frame(FrameStdin, "hello\n"))
	f.Add(append(frame(FrameInfo, `{"epoch":2,"node":"drift-aaaaaa","pid":7}`), frame(FrameStdout, "x")...))
	f.Add(frame(FrameSignal, "\x09"))
	f.Add([]byte{FrameStdout, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{FrameExit, 0, 0, 0, 9, '{'})
	f.Fuzz(func(t *testing.T, b []byte) {
		a, c := net.Pipe()
		defer a.Close()
		fc := NewFrameConn(c, bufio.NewReader(bytes.NewReader(b)))
		for range 1000 {
			fr, err := fc.Read()
			if err != nil {
				return
			}
			if len(fr.Data) > MaxFrame {
				t.Fatalf("a frame of %d bytes, over the limit", len(fr.Data))
			}
			// What the agents decode from frames and stream openings.
			var hello StintHello
			json.Unmarshal(fr.Data, &hello)
			var st ExitStatus
			json.Unmarshal(fr.Data, &st)
		}
	})
}

// A request body over MaxBody is refused, whether it says its length or
// not; a LargeBody route takes it.
func TestBodyLimit(t *testing.T) {
	read := func(w http.ResponseWriter, r *http.Request) {
		var v map[string]any
		if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Write([]byte("ok"))
	}
	s := &Server{Routes: map[string]http.Handler{
		"POST /small": http.HandlerFunc(read),
		"POST /large": LargeBody(http.HandlerFunc(read)),
	}}
	h := s.Handler()
	big := `{"x":"` + strings.Repeat("a", MaxBody) + `"}`
	for _, tt := range []struct {
		path    string
		chunked bool
		want    int
	}{
		{"/small", false, http.StatusRequestEntityTooLarge},
		{"/small", true, http.StatusBadRequest},
		{"/large", false, http.StatusOK},
	} {
		req := httptest.NewRequest("POST", tt.path, strings.NewReader(big))
		if tt.chunked {
			req.ContentLength = -1
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("POST %s of %d bytes (chunked %v): %d %q, want %d", tt.path, len(big), tt.chunked, rec.Code, strings.TrimSpace(rec.Body.String()), tt.want)
		}
	}
}
