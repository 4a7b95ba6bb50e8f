package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
)

// Rekey steps, in the order a rekey runs each on every node before the
// next (RekeyStep.Step).
const (
	RekeyInstall = "install" // accept the new key too (gossip, API)
	RekeyUse     = "use"     // seal, present and dial with the new key; keep it (the node's key file; the head's DRIFT-DATA)
	RekeyDrop    = "drop"    // accept no key but the one in use
	RekeyRemoved = "removed" // drift remove: this node is left out; it says so on its console
)

// RekeyRequest is POST /v1/rekey: move the whole cluster to a new key.
type RekeyRequest struct {
	// Without are nodes left out (drift remove): they are not given the
	// new key, so the cluster refuses them once the old key is dropped.
	Without []string `json:"without,omitempty"`
}

// RekeyResult is what a rekey did.
type RekeyResult struct {
	ClusterID string      `json:"cluster_id"` // unchanged: the cluster's ID outlives its keys
	OldKeyID  string      `json:"old_key_id"`
	KeyID     string      `json:"key_id"` // the new key's ID
	Key       string      `json:"key"`    // the new key in hex, for the operator's key file
	Took      []string    `json:"took"`   // nodes that use the new key now
	Missed    []RekeyMiss `json:"missed"` // members that did not take it: the cluster refuses them now
	Without   []string    `json:"without,omitempty"`
}

// RekeyMiss is a node that did not take the new key, and why.
type RekeyMiss struct {
	Node  string `json:"node"`
	Error string `json:"error"`
}

// RekeyStep is POST /v1/rekey/step: one node's part of a rekey, sent to
// every node by the one that runs it (over mutual TLS, so the key never
// travels in the clear).
type RekeyStep struct {
	Step    string `json:"step"`              // RekeyInstall, RekeyUse, RekeyDrop, RekeyRemoved
	Key     string `json:"key,omitempty"`     // the new key in hex (install, use)
	Cluster string `json:"cluster,omitempty"` // the cluster's ID: a node of another cluster refuses the step
	By      string `json:"by,omitempty"`      // the node that runs the rekey, for the log
}

// RekeyStepResult is a node's state after a step.
type RekeyStepResult struct {
	Node   string   `json:"node"`
	KeyIDs []string `json:"key_ids"` // the keys it accepts, the one in use first
}

// RemoveRequest is POST /v1/remove: make a node's credentials useless.
type RemoveRequest struct {
	Node  string `json:"node"`
	Force bool   `json:"force,omitempty"` // even while jobs run on it
}

// RemoveResult is what drift remove did.
type RemoveResult struct {
	Node      string      `json:"node"`
	Enrolment string      `json:"enrolment"` // what the head's enrolment does when it asks again
	Rekey     RekeyResult `json:"rekey"`
}

// RekeyService is what the agent's key rotation offers the API.
type RekeyService interface {
	Rekey(ctx context.Context, req RekeyRequest) (RekeyResult, error)
	Step(ctx context.Context, st RekeyStep) (RekeyStepResult, error)
	Remove(ctx context.Context, req RemoveRequest) (RemoveResult, error)
}

// RekeyRoutes are POST /v1/rekey, /v1/rekey/step and /v1/remove for the
// Server's Routes. Errors that are ErrBadRequest, ErrNotFound or
// ErrConflict answer 400, 404 or 409.
func RekeyRoutes(svc RekeyService) map[string]http.Handler {
	return map[string]http.Handler{
		"POST /v1/rekey":      jsonRoute(svc.Rekey),
		"POST /v1/rekey/step": jsonRoute(svc.Step),
		"POST /v1/remove":     jsonRoute(svc.Remove),
	}
}

// jsonRoute decodes a request into In, calls do and answers its result.
func jsonRoute[In, Out any](do func(context.Context, In) (Out, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var in In
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
			http.Error(w, "want a JSON request: "+err.Error(), http.StatusBadRequest)
			return
		}
		out, err := do(r.Context(), in)
		if err != nil {
			code := http.StatusInternalServerError
			switch {
			case errors.Is(err, ErrBadRequest):
				code = http.StatusBadRequest
			case errors.Is(err, ErrNotFound):
				code = http.StatusNotFound
			case errors.Is(err, ErrConflict):
				code = http.StatusConflict
			}
			http.Error(w, err.Error(), code)
			return
		}
		WriteJSON(w, out)
	})
}

// Rekey moves the cluster to a new key, leaving out req.Without.
func (c *Client) Rekey(ctx context.Context, req RekeyRequest) (RekeyResult, error) {
	var out RekeyResult
	return out, c.Call(ctx, http.MethodPost, "/v1/rekey", req, &out)
}

// RekeyStep runs one step of a rekey on the node c talks to.
func (c *Client) RekeyStep(ctx context.Context, st RekeyStep) (RekeyStepResult, error) {
	var out RekeyStepResult
	return out, c.Call(ctx, http.MethodPost, "/v1/rekey/step", st, &out)
}

// Remove makes a node's credentials useless.
func (c *Client) Remove(ctx context.Context, req RemoveRequest) (RemoveResult, error) {
	var out RemoveResult
	return out, c.Call(ctx, http.MethodPost, "/v1/remove", req, &out)
}
