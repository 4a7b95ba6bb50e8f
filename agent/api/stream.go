package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// A stream is a long-lived two-way connection for a job's terminal: the
// client POSTs a JSON request asking to upgrade to "drift-stream"; the
// server answers 101 and from then on both sides exchange Frames.

// StreamProtocol is the Upgrade token of a stream.
const StreamProtocol = "drift-stream"

// MaxFrame bounds a frame's payload.
const MaxFrame = 1 << 20

// Frame types.
const (
	FrameStdin    byte = 'i' // client → job
	FrameStdinEOF byte = 'I'
	FrameSignal   byte = 'k' // payload: the signal number, one byte
	FrameStdout   byte = 'o' // job → client
	FrameStderr   byte = 'e'
	FrameExit     byte = 'x' // payload: JSON ExitStatus; the last frame
	FrameInfo     byte = 'n' // payload: JSON, e.g. the job's id and node
	FrameError    byte = '!' // payload: text; the last frame
)

// Frame is one message on a stream.
type Frame struct {
	Type byte
	Data []byte
}

// FrameConn reads and writes frames; writes are safe from several goroutines.
type FrameConn struct {
	conn net.Conn
	r    *bufio.Reader
	mu   sync.Mutex
}

// NewFrameConn wraps conn; r is a reader already buffering conn (or nil).
func NewFrameConn(conn net.Conn, r *bufio.Reader) *FrameConn {
	if r == nil {
		r = bufio.NewReader(conn)
	}
	return &FrameConn{conn: conn, r: r}
}

// Write sends one frame.
func (c *FrameConn) Write(t byte, data []byte) error {
	if len(data) > MaxFrame {
		return fmt.Errorf("frame of %d bytes: over the %d-byte limit", len(data), MaxFrame)
	}
	var hdr [5]byte
	hdr[0] = t
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(data)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, err := c.conn.Write(append(hdr[:], data...)); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	return nil
}

// WriteJSON sends v as one frame of type t.
func (c *FrameConn) WriteJSON(t byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.Write(t, b)
}

// Read receives one frame. A malformed frame is an error; the stream is
// then unusable.
func (c *FrameConn) Read() (Frame, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > MaxFrame {
		return Frame{}, fmt.Errorf("read frame: %d bytes announced, over the %d-byte limit", n, MaxFrame)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(c.r, data); err != nil {
		return Frame{}, fmt.Errorf("read frame: %w", err)
	}
	return Frame{Type: hdr[0], Data: data}, nil
}

// Close closes the connection.
func (c *FrameConn) Close() error { return c.conn.Close() }

// SetWriteDeadline bounds the writes to come (zero: none), as
// net.Conn's does: a write that cannot finish by t fails.
func (c *FrameConn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }

// CloseWrite half-closes the connection where the transport allows it.
func (c *FrameConn) CloseWrite() error {
	switch cw := c.conn.(type) {
	case interface{ CloseWrite() error }:
		return cw.CloseWrite()
	}
	return nil
}

// Upgrade turns an HTTP request into a stream. It answers with an error
// status and returns nil when the request did not ask for one.
func Upgrade(w http.ResponseWriter, r *http.Request) *FrameConn {
	if !strings.EqualFold(r.Header.Get("Upgrade"), StreamProtocol) {
		http.Error(w, "this endpoint needs a stream: Upgrade: "+StreamProtocol, http.StatusUpgradeRequired)
		return nil
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "streams are not supported on this connection", http.StatusInternalServerError)
		return nil
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: " + StreamProtocol + "\r\nConnection: Upgrade\r\n\r\n")
	if err := brw.Flush(); err != nil {
		conn.Close()
		return nil
	}
	return NewFrameConn(conn, brw.Reader)
}

// Deadlines of calls whose context has none: no call between agents, or
// from the CLI, waits for ever on a peer that accepted the connection and
// then went silent.
const (
	DefaultCallTimeout = 2 * time.Minute  // a call and its answer
	RestoreTimeout     = 10 * time.Minute // a restore of a large job on a slow machine
	MigrateTimeout     = 2 * time.Hour    // a whole migration: gigabytes over a slow LAN
)

// streamOpenTimeout bounds a stream's HTTP upgrade; the stream itself
// then lasts as long as both ends keep it.
var streamOpenTimeout = 30 * time.Second

// Call sends in (nil: no body) as JSON to path and decodes the answer into
// out (nil: ignore it). A non-2xx answer is an error carrying its text.
// Without a deadline in ctx it has DefaultCallTimeout.
func (c *Client) Call(ctx context.Context, method, path string, in, out any) error {
	ctx, cancel := withDefaultTimeout(ctx, DefaultCallTimeout)
	defer cancel()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("api %s: %w", path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.callClient().Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return statusError(resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("api %s at %s: decode: %w", path, c.target, err)
	}
	return nil
}

// callClient is the HTTP client without the overall timeout: calls such
// as a migration run as long as their context allows.
func (c *Client) callClient() *http.Client {
	return &http.Client{Transport: c.hc.Transport}
}

// Stream opens a stream: it POSTs in as JSON to path, asking to upgrade.
func (c *Client) Stream(ctx context.Context, path string, in any) (*FrameConn, error) {
	body, err := json.Marshal(in)
	if err != nil {
		return nil, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, c.dialError(err)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(streamOpenTimeout)) // until the upgrade is answered
	req, _ := http.NewRequest(http.MethodPost, c.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Upgrade", StreamProtocol)
	req.Header.Set("Connection", "Upgrade")
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, c.dialError(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, c.dialError(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		err := statusError(resp)
		resp.Body.Close()
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return NewFrameConn(conn, br), nil
}

// dial opens a raw connection to the agent: the unix socket, or TCP with
// mutual TLS.
func (c *Client) dial(ctx context.Context) (net.Conn, error) {
	tr, ok := c.hc.Transport.(*http.Transport)
	if !ok {
		return nil, errors.New("api client has no transport")
	}
	if !c.remote {
		return tr.DialContext(ctx, "unix", c.target)
	}
	d := &tls.Dialer{Config: tr.TLSClientConfig, NetDialer: &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 10 * time.Second, Control: userTimeout(15 * time.Second)}}
	return d.DialContext(ctx, "tcp", c.target)
}

// Upload sends the body read from r to path with PUT, streaming it, and
// returns how many bytes went.
func (c *Client) Upload(ctx context.Context, path string, r io.Reader) (int64, error) {
	cr := &countingReader{r: r}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+path, cr)
	if err != nil {
		return 0, fmt.Errorf("api %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.callClient().Do(req)
	if err != nil {
		return cr.n, c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return cr.n, statusError(resp)
	}
	return cr.n, nil
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
