package api

import (
	"context"
	"net/http"
	"net/url"
)

// ModeRequest changes a node's mode (POST /v1/nodes/NAME/mode); nil
// fields stay as they are.
type ModeRequest struct {
	Blocked  *bool `json:"blocked,omitempty"`
	Draining *bool `json:"draining,omitempty"`
}

// BalanceState is whether automatic balancing is on, cluster-wide (GET and
// POST /v1/balance).
type BalanceState struct {
	On    bool `json:"on"`
	Local bool `json:"local,omitempty"` // apply on this node only (the broadcast's own messages)
}

// SetMode blocks, unblocks or drains the node named, through the agent
// the client talks to.
func (c *Client) SetMode(ctx context.Context, node string, req ModeRequest) error {
	return c.Call(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/mode", req, nil)
}

// Balance says whether automatic balancing is on.
func (c *Client) Balance(ctx context.Context) (BalanceState, error) {
	var out BalanceState
	return out, c.get(ctx, "/v1/balance", &out)
}

// SetBalance turns automatic balancing on or off: on every node, or with
// Local on the node asked only.
func (c *Client) SetBalance(ctx context.Context, st BalanceState) error {
	return c.Call(ctx, http.MethodPost, "/v1/balance", st, nil)
}
