package jobs

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// A terminal that stops reading (Ctrl-Z, or output piped into a pager)
// must not hold the job, its home or the node: each attached terminal
// gets its frames through a bounded queue that its own goroutine writes,
// with a deadline on each write. A terminal that falls further behind is
// told so and disconnected; `drift attach` reconnects it, with the output
// kept since.

// Bounds of an attached terminal's queue.
const (
	termQueueMax     = 4 << 20          // bytes of output a terminal may fall behind
	termWriteTimeout = 30 * time.Second // one frame's write
)

// errFellBehind is a terminal dropped for not reading.
var errFellBehind = errors.New("the terminal fell behind")

// termClient is one attached terminal (drift run, drift attach).
type termClient struct {
	fc   *api.FrameConn
	id   string // the job, for the message when it falls behind
	wake chan struct{}
	done chan struct{} // closed when the writer has ended

	mu     sync.Mutex
	queue  []api.Frame
	bytes  int
	closed bool // no more frames: the writer flushes the queue and ends
	behind bool // closed because the queue overflowed
	err    error
}

func newTermClient(fc *api.FrameConn, id string) *termClient {
	return &termClient{fc: fc, id: id, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// Write queues a frame for the terminal; it never blocks. It fails once
// the terminal has gone or fallen behind.
func (c *termClient) Write(t byte, data []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return c.errLocked()
	}
	if c.bytes+len(data) > termQueueMax && len(c.queue) > 0 {
		c.closed, c.behind = true, true
		c.signal()
		return errFellBehind
	}
	c.queue = append(c.queue, api.Frame{Type: t, Data: data})
	c.bytes += len(data)
	c.signal()
	return nil
}

func (c *termClient) errLocked() error {
	if c.err != nil {
		return c.err
	}
	if c.behind {
		return errFellBehind
	}
	return errors.New("the terminal has gone")
}

func (c *termClient) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close ends the terminal: the writer sends what is queued, then ends.
func (c *termClient) close() {
	c.mu.Lock()
	c.closed = true
	c.signal()
	c.mu.Unlock()
}

// run writes the queued frames until the terminal is closed and its
// queue empty, or a write fails.
func (c *termClient) run() {
	defer close(c.done)
	for {
		<-c.wake
		for {
			c.mu.Lock()
			q, behind, closed := c.queue, c.behind, c.closed
			c.queue, c.bytes = nil, 0
			c.mu.Unlock()
			if behind {
				c.fc.SetWriteDeadline(time.Now().Add(time.Second))
				c.fc.Write(api.FrameError, fmt.Appendf(nil, "this terminal stopped reading and fell more than %d MiB behind the job's output: it was disconnected; `drift attach %s` reconnects, with the output kept since", termQueueMax>>20, c.id))
				c.fc.Close()
				return
			}
			for _, f := range q {
				c.fc.SetWriteDeadline(time.Now().Add(termWriteTimeout))
				if err := c.fc.Write(f.Type, f.Data); err != nil {
					c.mu.Lock()
					c.closed, c.err, c.queue, c.bytes = true, err, nil, 0
					c.mu.Unlock()
					return
				}
			}
			if len(q) == 0 {
				if closed {
					return
				}
				break
			}
		}
	}
}
