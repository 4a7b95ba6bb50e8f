// Package labport is a command channel between a QEMU lab host and the
// drift agent inside a VM, over a virtio-serial port named PortName.
//
// It exists for drift-lab and the QEMU tests: it lets the host run any
// command of the image on a node (drift-lab exec) before, and independently
// of, the node's network. It runs any command as root, so the agent opens
// it only when the kernel command line says drift.lab=1 (drift-lab and the
// QEMU tests set it on every command line they build, and a lab head
// passes it on to the machines it network-boots) and QEMU provides the
// port: a real machine never listens on it.
//
// Three parts speak the protocol:
//
//   - Server runs in the agent, on the guest's end of the port.
//   - Broker runs on the host, one per node: it holds QEMU's end of the
//     port (a unix socket that takes one client at a time) and lets any
//     number of clients share it, each on its own unix connection.
//   - Run and Exec are the clients: they connect to a node's broker.
//
// The wire format is one JSON frame per line (see frame), in both
// directions and on both legs (client–broker, broker–guest). Each command
// is a stream with its own ID; its stdin, stdout and stderr flow as data
// frames while it runs, under a per-stream window so that one slow reader
// never holds up the others, and its end is an exit frame. Lines that do
// not parse are dropped, so either end can resynchronise after the other
// one restarts mid-line.
package labport

import (
	"errors"
	"io"
	"syscall"
	"time"
)

// PortName is the virtio-serial port name the lab gives QEMU:
//
//	-device virtio-serial-pci
//	-chardev socket,id=lab,path=SOCK,server=on,wait=off
//	-device virtserialport,chardev=lab,name=org.driftcluster.lab
const PortName = "org.driftcluster.lab"

// MaxOutput caps each of a command's stdout and stderr that Exec collects;
// the rest is dropped and Result.Truncated is set. Run streams without a cap.
const MaxOutput = 16 << 20

// Version is the protocol version carried in hello frames.
const Version = 2

const (
	// chunkSize is the most data one frame carries.
	chunkSize = 32 << 10
	// window is how many bytes of a stream's data, per direction, may be
	// in flight before the receiver has consumed them.
	window = 256 << 10
	// maxFrame bounds one encoded frame (a command line and environment
	// must fit; data frames are far smaller).
	maxFrame = 4 << 20
	// maxClientQueue bounds what the broker holds for one client; within
	// the windows it is never reached, so a client that makes it overflow
	// breaks the protocol and is dropped.
	maxClientQueue = 16 << 20
	// maxPortQueue bounds what the broker and the server hold for the port.
	maxPortQueue = 64 << 20
	// pollEOF is how long the server waits before reading again after the
	// host side of the port reports end of file (no host connected).
	pollEOF = 200 * time.Millisecond
	// hangupGrace is how long a command has between SIGHUP (its host went
	// away) and SIGKILL.
	hangupGrace = 2 * time.Second
	// drainQuiet is how long, after a command has exited, the server keeps
	// reading a stdout or stderr pipe that stays silent (a background
	// child may hold it open) before it gives up on it.
	drainQuiet = 2 * time.Second
	// stopGrace is how long Run waits, after its context ends and it has
	// sent SIGINT, for the command to exit before it hangs up.
	stopGrace = 2 * time.Second
)

// Request asks the guest to run a command and collect its output (Exec).
type Request struct {
	Argv  []string // program and arguments; looked up in the guest's PATH
	Stdin []byte   // nil: empty stdin
	Env   []string // KEY=VALUE added to the agent's environment
}

// Result is what a command run by Exec did.
type Result struct {
	Stdout    []byte
	Stderr    []byte
	ExitCode  int  // -1 if it was killed by a signal
	Truncated bool // output went over MaxOutput
}

// Command is a command to run on the guest with its standard streams
// connected to the caller's (Run).
type Command struct {
	Argv   []string  // program and arguments; looked up in the guest's PATH
	Env    []string  // KEY=VALUE added to the agent's environment
	Stdin  io.Reader // nil: empty stdin; its end is the command's end of file
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // nil: discarded
}

// ExitStatus is how a command ended.
type ExitStatus struct {
	Code   int            // exit code; -1 if a signal killed it
	Signal syscall.Signal // the signal that killed it; 0 if it exited
}

// Errors a caller can act on.
var (
	// ErrNotFound reports that the guest has no lab port (not a QEMU lab VM).
	ErrNotFound = errors.New("no virtio-serial port named " + PortName)
	// ErrLost reports that a command's fate is unknown: the broker, the
	// VM or the agent's lab port went away while it ran.
	ErrLost = errors.New("lost the command")
)
