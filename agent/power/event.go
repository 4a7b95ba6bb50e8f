// Package power is what a node does when someone presses its power
// button: the agent (agent/daemon) finds the ACPI power button among the
// kernel's input devices, reads its key presses, and runs a Shutdown: it
// sends the node's jobs elsewhere, as drift drain does, waits a bounded
// time until none runs here, says on the console what it did and what it
// could not, and powers the machine off. A second press powers off at once.
package power

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The kernel's input event codes that matter here (linux/input-event-codes.h).
const (
	EvKey    = 0x01 // EV_KEY: a key changed state
	KeyPower = 116  // KEY_POWER
)

// eventSize is the size of struct input_event on 64-bit Linux: a struct
// timeval (two 64-bit words), then type and code (16 bits each) and value
// (32 bits).
const eventSize = 24

// Event is one struct input_event, without its time stamp.
type Event struct {
	Type  uint16
	Code  uint16
	Value int32 // for keys: 1 pressed, 0 released, 2 repeated
}

// Press reports whether e is the power key going down.
func (e Event) Press() bool { return e.Type == EvKey && e.Code == KeyPower && e.Value == 1 }

// ParseEvent decodes one struct input_event (native, little-endian
// amd64 layout) from b, which holds at least eventSize bytes.
func ParseEvent(b []byte) (Event, error) {
	if len(b) < eventSize {
		return Event{}, fmt.Errorf("input event: %d bytes, want %d", len(b), eventSize)
	}
	return Event{
		Type:  binary.LittleEndian.Uint16(b[16:]),
		Code:  binary.LittleEndian.Uint16(b[18:]),
		Value: int32(binary.LittleEndian.Uint32(b[20:])),
	}, nil
}

// AppendEvent appends e as a struct input_event with a zero time stamp:
// what a test feeds ReadPresses.
func AppendEvent(b []byte, e Event) []byte {
	b = append(b, make([]byte, 16)...)
	b = binary.LittleEndian.AppendUint16(b, e.Type)
	b = binary.LittleEndian.AppendUint16(b, e.Code)
	return binary.LittleEndian.AppendUint32(b, uint32(e.Value))
}

// ReadPresses reads input events from r, one struct input_event at a
// time (an evdev device returns whole events on every read), until r ends
// or fails, and calls pressed for each press of the power key; releases,
// repeats and other keys are ignored. It returns nil when r ends cleanly
// between events.
func ReadPresses(r io.Reader, pressed func()) error {
	buf := make([]byte, eventSize)
	for {
		_, err := io.ReadFull(r, buf)
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, io.ErrUnexpectedEOF):
			return errors.New("read input events: a partial event at the end")
		case err != nil:
			return fmt.Errorf("read input events: %w", err)
		}
		if e, _ := ParseEvent(buf); e.Press() {
			pressed()
		}
	}
}
