package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Enrolment states of a network-booted machine (EnrollMachine.State).
const (
	EnrollPending  = "pending"  // asked to join; waits for drift admit or drift reject
	EnrollAdmitted = "admitted" // may join: it is given the cluster key when it asks
	EnrollRefused  = "refused"  // drift reject: it is told so, and never given the key
)

// Enrolment is GET /v1/enroll: how the head admits machines that
// network-boot without the cluster key, and the machines that asked.
// Only a head serves it.
type Enrolment struct {
	Mode        string          `json:"mode"`        // "approve", "auto" or the MAC list (drift.enroll=)
	Addr        string          `json:"addr"`        // where machines ask: HEAD:PORT over TLS
	Fingerprint string          `json:"fingerprint"` // SHA-256 of the head's enrolment certificate, which boot.ipxe carries
	Persistent  bool            `json:"persistent"`  // decisions are kept on the head's DRIFT-DATA partition
	Error       string          `json:"error,omitempty"`
	Machines    []EnrollMachine `json:"machines"` // pending first, then most recent first
}

// EnrollMachine is one machine that asked the head to join.
type EnrollMachine struct {
	MAC    string    `json:"mac"`
	Node   string    `json:"node"` // the node name it takes: drift-<last 3 MAC bytes>
	Addr   string    `json:"addr"` // the address it asked from
	State  string    `json:"state"`
	How    string    `json:"how"`     // what decided: "drift.enroll=auto", "drift.enroll MAC list", "drift admit", "drift reject"; "" while pending
	PubKey string    `json:"pub_key"` // SHA-256 of the public key it asked with (each boot makes a new one)
	First  time.Time `json:"first"`   // when it first asked
	Last   time.Time `json:"last"`    // when it last asked
}

// EnrollDecision is POST /v1/enroll/admit and /v1/enroll/reject: which
// machines, by node name, MAC address, or "all" (every pending one).
type EnrollDecision struct {
	Select string `json:"select"`
}

// EnrollService is what the head's enrolment offers the API.
type EnrollService interface {
	Enrolment() Enrolment
	// Decide admits (admit true) or refuses the machines sel names and
	// returns them; ErrNotFound when sel names none.
	Decide(sel string, admit bool) ([]EnrollMachine, error)
}

// EnrollRoutes are GET /v1/enroll and POST /v1/enroll/admit and
// /v1/enroll/reject for the Server's Routes; svc nil (not a head): 404
// with an explanation.
func EnrollRoutes(svc EnrollService) map[string]http.Handler {
	notHead := func(w http.ResponseWriter) bool {
		if svc == nil {
			http.Error(w, "this node is not a head: machines enrol with the head (drift.role=head); run this on the head or with --cluster HEAD", http.StatusNotFound)
			return true
		}
		return false
	}
	decide := func(admit bool) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if notHead(w) {
				return
			}
			var d EnrollDecision
			if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&d); err != nil || d.Select == "" {
				http.Error(w, "want {\"select\": NAME, MAC or all}", http.StatusBadRequest)
				return
			}
			ms, err := svc.Decide(d.Select, admit)
			if errors.Is(err, ErrNotFound) {
				http.Error(w, err.Error(), http.StatusNotFound)
				return
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			WriteJSON(w, ms)
		})
	}
	return map[string]http.Handler{
		"GET /v1/enroll": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if notHead(w) {
				return
			}
			WriteJSON(w, svc.Enrolment())
		}),
		"POST /v1/enroll/admit":  decide(true),
		"POST /v1/enroll/reject": decide(false),
	}
}

// Enrolment describes the head's enrolment of network-booted machines.
func (c *Client) Enrolment(ctx context.Context) (Enrolment, error) {
	var out Enrolment
	return out, c.get(ctx, "/v1/enroll", &out)
}

// EnrollAdmit admits the machines sel names (node name, MAC or "all").
func (c *Client) EnrollAdmit(ctx context.Context, sel string) ([]EnrollMachine, error) {
	var out []EnrollMachine
	return out, c.Call(ctx, http.MethodPost, "/v1/enroll/admit", EnrollDecision{Select: sel}, &out)
}

// EnrollReject refuses the machines sel names (node name, MAC or "all").
func (c *Client) EnrollReject(ctx context.Context, sel string) ([]EnrollMachine, error) {
	var out []EnrollMachine
	return out, c.Call(ctx, http.MethodPost, "/v1/enroll/reject", EnrollDecision{Select: sel}, &out)
}
