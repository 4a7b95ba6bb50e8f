package arrays

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/driftcluster/drift/agent/api"
)

// Routes are the arrays endpoints of the agent's API. Any node answers
// for any array: the queue is on the shared storage.
func (s *Service) Routes() map[string]http.Handler {
	s.init()
	return map[string]http.Handler{
		"POST /v1/arrays":           http.HandlerFunc(s.handleSubmit),
		"GET /v1/arrays":            http.HandlerFunc(s.handleList),
		"GET /v1/arrays/{id}":       http.HandlerFunc(s.handleGet),
		"GET /v1/arrays/{id}/tasks": http.HandlerFunc(s.handleTasks),
		"POST /v1/arrays/{id}/kill": http.HandlerFunc(s.handleKill),
		"POST /v1/arrays-look":      http.HandlerFunc(s.handleLook),
	}
}

func (s *Service) handleSubmit(w http.ResponseWriter, r *http.Request) {
	if !s.mounted(w) {
		return
	}
	var spec api.ArraySpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
		http.Error(w, "array spec: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := Validate(spec, s.sharedRoot()); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	info, err := s.Submit(spec)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	api.WriteJSON(w, info)
}

// handleLook: another node has queued or killed an array.
func (s *Service) handleLook(w http.ResponseWriter, r *http.Request) {
	s.lookNow()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.mounted(w) {
		return
	}
	list, err := s.List()
	if err != nil {
		http.Error(w, "arrays: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	if list == nil {
		list = []api.ArrayInfo{}
	}
	api.WriteJSON(w, list)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	if !s.mounted(w) {
		return
	}
	info, err := s.Array(r.PathValue("id"))
	if err != nil {
		httpError(w, err)
		return
	}
	api.WriteJSON(w, info)
}

func (s *Service) handleTasks(w http.ResponseWriter, r *http.Request) {
	if !s.mounted(w) {
		return
	}
	st, err := s.Tasks(r.PathValue("id"))
	if err != nil {
		httpError(w, err)
		return
	}
	api.WriteJSON(w, st)
}

func (s *Service) handleKill(w http.ResponseWriter, r *http.Request) {
	if !s.mounted(w) {
		return
	}
	info, err := s.Kill(r.PathValue("id"))
	if err != nil {
		httpError(w, err)
		return
	}
	api.WriteJSON(w, info)
}

// mounted answers 503 when the shared storage, where the queue lives, is
// not mounted here: reads of it would say that no array exists.
func (s *Service) mounted(w http.ResponseWriter) bool {
	if s.Shared != nil && !s.Shared() {
		http.Error(w, "the shared storage is not mounted on "+s.Self+", and the queue lives there (drift storage says why); try again in a moment", http.StatusServiceUnavailable)
		return false
	}
	return true
}

func httpError(w http.ResponseWriter, err error) {
	code := http.StatusServiceUnavailable
	if errors.Is(err, ErrNoArray) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}
