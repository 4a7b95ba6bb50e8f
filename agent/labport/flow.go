package labport

import (
	"io"
	"sync"
)

// queue holds encoded frames for one connection; its run loop is the only
// writer of that connection, so nothing writes to a connection while
// holding a lock that other goroutines need.
type queue struct {
	mu     sync.Mutex
	cond   sync.Cond
	items  []queued
	size   int // bytes in items
	max    int
	closed bool
	drain  bool // closeWhenEmpty: run returns once it has written the rest
}

type queued struct {
	tag  uint64 // purge removes by tag
	line []byte
}

func newQueue(max int) *queue {
	q := &queue{max: max}
	q.cond.L = &q.mu
	return q
}

// push appends line and reports whether it was taken: false when the
// queue is closed or would hold more than its maximum.
func (q *queue) push(tag uint64, line []byte) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || q.drain || q.size+len(line) > q.max {
		return false
	}
	q.items = append(q.items, queued{tag, line})
	q.size += len(line)
	q.cond.Signal()
	return true
}

// purge drops the queued lines with the given tag.
func (q *queue) purge(tag uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	kept := q.items[:0]
	for _, it := range q.items {
		if it.tag == tag {
			q.size -= len(it.line)
			continue
		}
		kept = append(kept, it)
	}
	clear(q.items[len(kept):])
	q.items = kept
}

// close drops what is queued and makes run return; later pushes fail.
func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.items, q.size = nil, 0
	q.cond.Broadcast()
	q.mu.Unlock()
}

// closeWhenEmpty makes run return once it has written what is queued;
// later pushes fail.
func (q *queue) closeWhenEmpty() {
	q.mu.Lock()
	q.drain = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// run writes queued lines to w, several at a time, until the queue is
// closed or a write fails; then it closes the queue.
func (q *queue) run(w io.Writer) error {
	defer q.close()
	var buf []byte
	for {
		q.mu.Lock()
		for len(q.items) == 0 && !q.closed && !q.drain {
			q.cond.Wait()
		}
		if q.closed || len(q.items) == 0 {
			q.mu.Unlock()
			return nil
		}
		buf = buf[:0]
		n := 0
		for n < len(q.items) && (n == 0 || len(buf)+len(q.items[n].line) <= 256<<10) {
			buf = append(buf, q.items[n].line...)
			n++
		}
		clear(q.items[:n])
		q.items = q.items[n:]
		q.size -= len(buf)
		q.mu.Unlock()
		if _, err := w.Write(buf); err != nil {
			return err
		}
	}
}

// credit is a sender's side of a window: bytes it may still send.
type credit struct {
	mu   sync.Mutex
	cond sync.Cond
	n    int64
	dead bool
}

func newCredit(n int64) *credit {
	c := &credit{n: n}
	c.cond.L = &c.mu
	return c
}

// take waits until some credit is available and takes up to max bytes of
// it; it returns 0 once the credit is killed.
func (c *credit) take(max int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.n <= 0 && !c.dead {
		c.cond.Wait()
	}
	if c.dead {
		return 0
	}
	k := min(int64(max), c.n)
	c.n -= k
	return int(k)
}

// add returns n bytes of credit (the receiver consumed them).
func (c *credit) add(n int64) {
	c.mu.Lock()
	c.n += n
	c.cond.Broadcast()
	c.mu.Unlock()
}

// kill wakes every take, for good: the stream is over.
func (c *credit) kill() {
	c.mu.Lock()
	c.dead = true
	c.cond.Broadcast()
	c.mu.Unlock()
}

// inbox is a receiver's side of a window: data that arrived and waits to
// be consumed, then end of file.
type inbox struct {
	mu   sync.Mutex
	cond sync.Cond
	bufs [][]byte
	size int
	eof  bool
	dead bool
}

func newInbox() *inbox {
	b := &inbox{}
	b.cond.L = &b.mu
	return b
}

// push adds data; it reports false if the sender overran the window.
// Data after end of file or after kill is dropped.
func (b *inbox) push(p []byte) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.eof || b.dead {
		return true
	}
	if b.size+len(p) > window {
		return false
	}
	b.bufs = append(b.bufs, p)
	b.size += len(p)
	b.cond.Signal()
	return true
}

// close marks end of file, after the data already pushed.
func (b *inbox) close() {
	b.mu.Lock()
	b.eof = true
	b.cond.Broadcast()
	b.mu.Unlock()
}

// kill drops what is held and ends pop for good.
func (b *inbox) kill() {
	b.mu.Lock()
	b.dead, b.bufs, b.size = true, nil, 0
	b.cond.Broadcast()
	b.mu.Unlock()
}

// pop waits for the next piece of data and returns it; at end of file or
// after kill it returns nil, false.
func (b *inbox) pop() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.bufs) == 0 && !b.eof && !b.dead {
		b.cond.Wait()
	}
	if b.dead || len(b.bufs) == 0 {
		return nil, false
	}
	p := b.bufs[0]
	b.bufs[0] = nil
	b.bufs = b.bufs[1:]
	b.size -= len(p)
	return p, true
}
