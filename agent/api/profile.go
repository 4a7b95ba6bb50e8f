package api

import (
	"context"
	"io"
	"net/url"
	"strconv"
	"time"
)

// MaxProfile is the longest CPU profile an agent takes at once.
const MaxProfile = 2 * time.Minute

// ProfilePath is the path of a CPU profile of node's agent over d:
// GET /v1/nodes/NAME/profile?seconds=N answers Go's pprof format
// (go tool pprof reads it) once the N seconds are over.
func ProfilePath(node string, d time.Duration) string {
	return "/v1/nodes/" + url.PathEscape(node) + "/profile?seconds=" + strconv.Itoa(int(d.Round(time.Second)/time.Second))
}

// Profile returns a CPU profile of node's agent ("": the node the client
// talks to) taken over d, in pprof's format: close it when done.
func (c *Client) Profile(ctx context.Context, node string, d time.Duration) (io.ReadCloser, error) {
	if node == "" {
		node = "self"
	}
	return c.open(ctx, ProfilePath(node, d))
}
