package api

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// LogsQuery asks for a node's log: GET /v1/nodes/NAME/logs?lines=N&follow=1
// answers its newest lines as text, one per line, and with follow keeps
// the response open and sends each new line as it is logged.
type LogsQuery struct {
	Lines  int  // the newest Lines lines; 0: all the node keeps
	Follow bool // then every new line, until the caller hangs up
}

// LogsPath is the path and query of q for node.
func LogsPath(node string, q LogsQuery) string {
	v := url.Values{}
	if q.Lines > 0 {
		v.Set("lines", strconv.Itoa(q.Lines))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	p := "/v1/nodes/" + url.PathEscape(node) + "/logs"
	if len(v) > 0 {
		p += "?" + v.Encode()
	}
	return p
}

// ParseLogsQuery reads a LogsQuery from a request's query.
func ParseLogsQuery(v url.Values) (LogsQuery, error) {
	var q LogsQuery
	if s := v.Get("lines"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return q, &StatusError{Code: http.StatusBadRequest, Msg: "logs: lines= wants a number of lines, 0 or more", Err: ErrBadRequest}
		}
		q.Lines = n
	}
	q.Follow = v.Get("follow") == "1" || v.Get("follow") == "true"
	return q, nil
}

// Logs returns node's log ("": the node the client talks to) as text:
// close it when done. With q.Follow it ends only when ctx does or the
// node goes away.
func (c *Client) Logs(ctx context.Context, node string, q LogsQuery) (io.ReadCloser, error) {
	if node == "" {
		node = "self"
	}
	return c.open(ctx, LogsPath(node, q))
}
