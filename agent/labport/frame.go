package labport

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Frame types. A stream is one command; the host names it with an ID in
// its open frame, and every other frame of the stream carries that ID.
const (
	// tHello: the host sends one when it connects; the guest answers
	// with its Instance, and sends one unasked when its server starts, so
	// the host learns when the agent's end restarted.
	tHello = "hello"
	// tOpen, host to guest: run Argv with Env; Timeout (ms) kills it.
	tOpen = "open"
	// tData: stdin host to guest (FD 0), stdout and stderr guest to host
	// (FD 1, 2). The sender holds at most window unacknowledged bytes per
	// direction.
	tData = "data"
	// tEOF, host to guest: stdin ends.
	tEOF = "eof"
	// tWindow: the receiver consumed N bytes of data (FD 0: stdin; 1 or 2:
	// output, which shares one window); the sender may send N more.
	tWindow = "window"
	// tSignal, host to guest: send Sig to the command's process group.
	tSignal = "signal"
	// tClose, host to guest: the host is gone; the guest hangs the command
	// up (SIGHUP to its process group, SIGKILL hangupGrace later).
	tClose = "close"
	// tExit, guest to host, after the last output: the command exited
	// with Code, or was killed by Sig (Code -1), or could not run (Err). The
	// broker also sends one, with Err and Lost, when it loses a stream.
	tExit = "exit"
)

// frame is one line of the protocol. Which fields mean something depends
// on T.
type frame struct {
	T        string   `json:"t"`
	ID       uint64   `json:"id,omitempty"`
	Argv     []string `json:"argv,omitempty"`
	Env      []string `json:"env,omitempty"`
	Timeout  int64    `json:"timeout_ms,omitempty"` // open: 0 is no limit
	FD       int      `json:"fd,omitempty"`
	Data     []byte   `json:"d,omitempty"`
	N        int64    `json:"n,omitempty"`
	Sig      int      `json:"sig,omitempty"` // signal: to send; exit: that killed it
	Code     int      `json:"code,omitempty"`
	Err      string   `json:"err,omitempty"`
	Lost     bool     `json:"lost,omitempty"`      // exit: Err says why the stream was lost, not why it could not start
	TimedOut bool     `json:"timed_out,omitempty"` // exit: killed when its Timeout passed
	V        int      `json:"v,omitempty"`         // hello
	Instance string   `json:"instance,omitempty"`  // hello from the guest
}

// encode renders f as one line.
func encode(f frame) []byte {
	b, err := json.Marshal(f)
	if err != nil { // only plain types: cannot happen
		panic(fmt.Sprintf("labport: encode %s frame: %v", f.T, err))
	}
	return append(b, '\n')
}

// errMalformed is a line that is not a frame; the reader has skipped it.
var errMalformed = errors.New("malformed frame")

// frameReader reads frames, one per line, from a stream of bytes.
type frameReader struct {
	r   *bufio.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// reset drops what fr holds and has it read from r.
func (fr *frameReader) reset(r io.Reader) { fr.r.Reset(r) }

// next returns the next frame. A line that is too long, not JSON, or has
// no type is skipped, and next returns an error wrapping errMalformed for
// it; the caller may log it and call next again. Other errors are the
// underlying reader's; a partial last line is dropped.
func (fr *frameReader) next() (frame, error) {
	for {
		line, err := fr.line()
		if err != nil {
			return frame{}, err
		}
		if len(line) == 0 {
			continue
		}
		var f frame
		if err := json.Unmarshal(line, &f); err != nil {
			return frame{}, fmt.Errorf("%w (%d bytes): %v", errMalformed, len(line), err)
		}
		if f.T == "" {
			return frame{}, fmt.Errorf("%w (%d bytes): no type", errMalformed, len(line))
		}
		return f, nil
	}
}

// line returns the next line, trimmed; it is valid until the next call.
func (fr *frameReader) line() ([]byte, error) {
	fr.buf = fr.buf[:0]
	tooLong := false
	for {
		chunk, err := fr.r.ReadSlice('\n')
		if !tooLong {
			fr.buf = append(fr.buf, chunk...)
			if len(fr.buf) > maxFrame {
				tooLong, fr.buf = true, fr.buf[:0]
			}
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if tooLong {
			return nil, fmt.Errorf("%w: longer than %d bytes", errMalformed, maxFrame)
		}
		return bytes.TrimSpace(fr.buf), nil
	}
}
