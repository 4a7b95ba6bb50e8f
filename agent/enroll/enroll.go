// Package enroll gives the cluster key to machines that network-boot
// without it. Nothing the head serves over the network (DHCP, TFTP, the
// boot script, the kernel, the initramfs) carries the key; a machine that
// boots from it comes up keyless, makes a key pair, and asks the head over
// TLS, checking the head's certificate against the fingerprint that the
// boot script carries (public: anyone may read it, no one can forge the
// certificate it names). The head decides by its mode (drift.enroll=):
// approve (the default: the operator admits each machine with drift
// admit), auto (every machine that asks), or a list of MAC addresses.
// An admitted machine receives the key over that channel and joins as any
// node does.
//
// Head runs on the head (driftd); Ask runs on the machine that enrols.
package enroll

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Port is the head's enrolment port (TCP, TLS).
const Port = 7949

// Path is the one endpoint: POST a Request, get a Response.
const Path = "/v1/enrol"

// Request is what a machine sends: who it says it is. Its public key is
// the TLS client certificate it connects with.
type Request struct {
	MAC     string `json:"mac"`     // the MAC it network-booted with
	Node    string `json:"node"`    // its node name
	Version string `json:"version"` // its drift version
}

// Response is the head's answer.
type Response struct {
	State string `json:"state"`         // api.EnrollPending, api.EnrollAdmitted or api.EnrollRefused
	Key   string `json:"key,omitempty"` // the cluster key in hex, only when admitted
	// Cluster is the cluster's ID, which outlives its keys (drift rekey),
	// only when admitted; "": the key's own ID (a head before rekeys).
	Cluster string `json:"cluster,omitempty"`
	Message string `json:"message"` // what the operator should do, for the machine's console
}

// Mode is how the head admits machines.
type Mode struct {
	Auto bool     // every machine that asks
	MACs []string // these machines (lowercase), the others wait for drift admit
}

// ParseMode reads drift.enroll's value: "" or "approve", "auto", or a
// comma-separated list of MAC addresses.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "approve":
		return Mode{}, nil
	case "auto":
		return Mode{Auto: true}, nil
	}
	var m Mode
	for _, f := range strings.Split(s, ",") {
		hw, err := net.ParseMAC(f)
		if err != nil || len(hw) != 6 {
			return Mode{}, fmt.Errorf("drift.enroll=%q: %q is not a MAC address: %w", s, f, ErrBadMode)
		}
		m.MACs = append(m.MACs, hw.String())
	}
	return m, nil
}

// ErrBadMode reports a drift.enroll value that is none of the modes.
var ErrBadMode = errors.New("want approve, auto or a comma-separated list of MAC addresses")

// String is the mode as drift.enroll spells it.
func (m Mode) String() string {
	switch {
	case m.Auto:
		return "auto"
	case len(m.MACs) > 0:
		return strings.Join(m.MACs, ",")
	}
	return "approve"
}

// admits reports whether the mode admits mac without asking, and why.
func (m Mode) admits(mac string) (string, bool) {
	switch {
	case m.Auto:
		return "drift.enroll=auto", true
	case slices.Contains(m.MACs, mac):
		return "drift.enroll MAC list", true
	}
	return "", false
}
