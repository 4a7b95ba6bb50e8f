package api

import (
	"errors"
	"io"
	"net/http"
	"strings"
)

// Errors an agent's answer stands for, by its HTTP status: a *StatusError
// matches one of them with errors.Is, so callers act on the kind of
// refusal rather than on a number.
var (
	ErrBadRequest  = errors.New("the agent did not understand the request")          // 400
	ErrNotFound    = errors.New("no such job, node or file")                         // 404
	ErrConflict    = errors.New("not possible in the state it is in")                // 409: e.g. the job has exited, the target is full
	ErrUnreachable = errors.New("a node the agent had to ask did not answer")        // 502, 504
	ErrUnavailable = errors.New("the agent cannot do it now: try again in a moment") // 503
)

// sentinelOf is the error a status stands for; nil: none.
func sentinelOf(code int) error {
	switch code {
	case http.StatusBadRequest:
		return ErrBadRequest
	case http.StatusNotFound:
		return ErrNotFound
	case http.StatusConflict:
		return ErrConflict
	case http.StatusBadGateway, http.StatusGatewayTimeout:
		return ErrUnreachable
	case http.StatusServiceUnavailable:
		return ErrUnavailable
	}
	return nil
}

// StatusError is an agent's refusal: its HTTP status and its words.
type StatusError struct {
	Code int
	Msg  string
	Err  error // the sentinel the status stands for, for errors.Is; nil: none
}

func (e *StatusError) Error() string { return e.Msg }

func (e *StatusError) Unwrap() error { return e.Err }

// statusError reads an agent's refusal from resp.
func statusError(resp *http.Response) *StatusError {
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	text := strings.TrimSpace(string(msg))
	if text == "" {
		text = resp.Status
	}
	return &StatusError{Code: resp.StatusCode, Msg: text, Err: sentinelOf(resp.StatusCode)}
}
