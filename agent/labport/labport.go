// Package labport is a command channel between a QEMU lab host and the
// drift agent inside a VM, over a virtio-serial port named PortName.
//
// It exists for drift-lab and the QEMU tests: it lets the host run any
// command of the image on a node (drift-lab exec) before, and independently
// of, the node's network. Real machines have no such port, so the agent
// serves it only where QEMU provides one.
//
// The wire format is one JSON object per line in each direction: the host
// sends a Request, the guest answers with a Response carrying the same ID.
package labport

import (
	"errors"
	"time"
)

// PortName is the virtio-serial port name the lab gives QEMU:
//
//	-device virtio-serial-pci
//	-chardev socket,id=lab,path=SOCK,server=on,wait=off
//	-device virtserialport,chardev=lab,name=org.driftcluster.lab
const PortName = "org.driftcluster.lab"

// MaxOutput caps each of a command's stdout and stderr; the rest is dropped
// and Result.Truncated is set.
const MaxOutput = 16 << 20

// maxLine bounds one protocol line (base64 of two full outputs plus slack).
const maxLine = 3*MaxOutput + 1<<20

// Request asks the guest to run a command.
type Request struct {
	Argv  []string `json:"argv"`            // program and arguments; looked up in the guest's PATH
	Stdin []byte   `json:"stdin,omitempty"` // nil: empty stdin
	Env   []string `json:"env,omitempty"`   // KEY=VALUE added to the agent's environment
}

// Result is what a command did.
type Result struct {
	Stdout    []byte `json:"stdout,omitempty"`
	Stderr    []byte `json:"stderr,omitempty"`
	ExitCode  int    `json:"exit_code"`           // -1 if it was killed by a signal
	Truncated bool   `json:"truncated,omitempty"` // output went over MaxOutput
}

// wireRequest is a Request on the wire.
type wireRequest struct {
	ID      string `json:"id"`
	Timeout int64  `json:"timeout_ms,omitempty"` // 0: no limit
	Request
}

// wireResponse is a Result on the wire, or the reason there is none.
type wireResponse struct {
	ID    string `json:"id"`
	Error string `json:"error,omitempty"` // the command could not be started
	Result
}

// ErrNotFound reports that the guest has no lab port (not a QEMU lab VM).
var ErrNotFound = errors.New("no virtio-serial port named " + PortName)

// pollEOF is how long the server waits before reading again after the
// host side of the port reports end of file (no host connected).
const pollEOF = 200 * time.Millisecond
