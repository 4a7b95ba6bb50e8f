package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// ErrNoAgent reports that no agent listens on the local socket.
var ErrNoAgent = errors.New("no drift agent on this machine: use --cluster ADDR --key-file F from a host, or run on a node")

// RefusedError reports that the agent at Addr refused the TLS handshake, or
// presented a certificate of another key: the key file is not the cluster's.
type RefusedError struct {
	Addr string
	Err  error
}

func (e *RefusedError) Error() string {
	return "the cluster at " + e.Addr + " refused this key: check --key-file"
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Client calls an agent's API. Make one with Local or Remote.
type Client struct {
	hc     *http.Client
	base   string
	target string // for errors: the socket path or host:port
	remote bool
}

// Local returns a client of the agent on this machine, at the unix socket
// path ("" : DefaultSocket).
func Local(path string) *Client {
	if path == "" {
		path = DefaultSocket
	}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "http://drift", target: path}
}

// Remote returns a client of the agent at addr (host or host:port; the
// port defaults to DefaultPort), authenticated with the cluster key k.
func Remote(addr string, k clusterkey.Key) (*Client, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(strings.Trim(addr, "[]"), strconv.Itoa(DefaultPort))
	}
	cfg, err := ClientTLS(k)
	if err != nil {
		return nil, err
	}
	// Agents on dead machines must not hold a caller for minutes: a short
	// dial timeout, and TCP gives up on unacknowledged data after 15 s.
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 10 * time.Second, Control: userTimeout(15 * time.Second)}
	// Idle connections are kept for less than the server's IdleTimeout,
	// so that a kept one is not closed under a request.
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: false, TLSHandshakeTimeout: 10 * time.Second, DialContext: dialer.DialContext,
		IdleConnTimeout: 30 * time.Second, MaxIdleConnsPerHost: 4}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 30 * time.Second}, base: "https://" + addr, target: addr, remote: true}, nil
}

// CloseIdleConnections closes the connections kept for later calls.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// Nodes lists every member of the cluster.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	return out, c.get(ctx, "/v1/nodes", &out)
}

// Status describes the node that answers.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.get(ctx, "/v1/status", &out)
}

func (c *Client) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return fmt.Errorf("api %s: %w", path, err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		se := statusError(resp)
		se.Msg = fmt.Sprintf("api %s at %s: %s: %s", path, c.target, resp.Status, se.Msg)
		return se
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		if c.remote && isTLSRefusal(err) {
			return &RefusedError{Addr: c.target, Err: err}
		}
		return fmt.Errorf("api %s at %s: decode: %w", path, c.target, err)
	}
	return nil
}

// dialError turns a failed request into one the user can act on.
func (c *Client) dialError(err error) error {
	if !c.remote && (errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)) {
		return fmt.Errorf("%w (%s)", ErrNoAgent, c.target)
	}
	if c.remote && isTLSRefusal(err) {
		return &RefusedError{Addr: c.target, Err: err}
	}
	return fmt.Errorf("drift agent at %s: %w", c.target, err)
}

// isTLSRefusal reports whether err is a TLS handshake refused by either side.
func isTLSRefusal(err error) bool {
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	var op *net.OpError // crypto/tls reports a peer's alert as a "remote error"
	return errors.Is(err, ErrWrongKey) || errors.As(err, &alert) || errors.As(err, &rec) ||
		(errors.As(err, &op) && op.Op == "remote error")
}

// userTimeout sets TCP_USER_TIMEOUT on a socket: how long sent data may
// stay unacknowledged before the connection is dropped.
func userTimeout(d time.Duration) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12 /* TCP_USER_TIMEOUT */, int(d.Milliseconds()))
		})
		if err != nil {
			return err
		}
		return serr
	}
}
