package storage

import (
	"bufio"
	"encoding/binary"
	"io"
	"sync"

	"golang.org/x/sys/unix"
)

// 9P2000.L message types and sizes that xattrConn looks at.
const (
	msgRlerror     = 7
	msgTxattrwalk  = 30
	msgRxattrwalk  = 31
	msgHeaderLen   = 7 // size[4] type[1] tag[2]
	rlerrorBodyLen = 4 // ecode[4]
)

// xattrConn sits between a 9P connection and hugelgupf/p9's server and
// turns the server's answer to a Txattrwalk for an attribute that does not
// exist from EINVAL into ENODATA, which is what a local file system says.
//
// The library answers every failed xattr lookup with EINVAL. The kernel
// looks up security.capability on every exec, and takes EINVAL as a
// damaged capability attribute: exec of any file on /cluster failed with
// "invalid argument". ENODATA means "no file capabilities", and exec goes
// on.
type xattrConn struct {
	r io.Reader
	w io.Writer
	c io.Closer

	mu      sync.Mutex
	pending map[uint16]bool // tags of Txattrwalk requests not yet answered

	in  frameParser // requests, read by the server
	out frameParser // replies, written by the server
	// msg is the reply being written, kept until whole; rewrite says
	// it answers a pending Txattrwalk with an error.
	msg     []byte
	rewrite bool
}

// maxHeldReply is the largest reply buffer kept between replies.
const maxHeldReply = 64 << 10

func newXattrConn(rwc io.ReadWriteCloser) *xattrConn {
	// Buffered: the server reads each message's header, then its body,
	// which one read(2) gets whole through the buffer (a system call
	// saved per request, on the head that answers every node).
	return &xattrConn{r: bufio.NewReaderSize(rwc, 64<<10), w: rwc, c: rwc, pending: map[uint16]bool{}}
}

// Close closes the connection.
func (c *xattrConn) Close() error { return c.c.Close() }

// frameParser follows the framing of a 9P byte stream.
type frameParser struct {
	hdr       []byte // header bytes of the current message seen so far
	remaining int    // body bytes of the current message still to come
}

// header consumes header bytes from p; it returns how many it took and
// whether the header is now complete.
func (f *frameParser) header(p []byte) (int, bool) {
	n := min(msgHeaderLen-len(f.hdr), len(p))
	f.hdr = append(f.hdr, p[:n]...)
	if len(f.hdr) < msgHeaderLen {
		return n, false
	}
	size := int(binary.LittleEndian.Uint32(f.hdr))
	f.remaining = max(size-msgHeaderLen, 0)
	return n, true
}

func (f *frameParser) typ() byte   { return f.hdr[4] }
func (f *frameParser) tag() uint16 { return binary.LittleEndian.Uint16(f.hdr[5:]) }

// Read implements io.Reader: it passes the client's requests through,
// noting the tags of xattr walks.
func (c *xattrConn) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	b := p[:n]
	for len(b) > 0 {
		if c.in.remaining > 0 {
			k := min(c.in.remaining, len(b))
			c.in.remaining -= k
			b = b[k:]
			continue
		}
		k, done := c.in.header(b)
		b = b[k:]
		if done {
			if c.in.typ() == msgTxattrwalk {
				c.mu.Lock()
				c.pending[c.in.tag()] = true
				c.mu.Unlock()
			}
			c.in.hdr = c.in.hdr[:0]
		}
	}
	return n, err
}

// Write implements io.Writer: it passes the server's replies through,
// rewriting the error of a failed xattr walk. Each reply goes out in one
// write(2), whole: the server writes its header, body and payload
// separately, and each write would be a TCP segment of its own (the
// socket has no Nagle delay), which the head, answering every node,
// paid for in system calls and, on an emulated NIC, in packets.
func (c *xattrConn) Write(p []byte) (int, error) {
	total := len(p)
	for len(p) > 0 {
		if c.out.hdr != nil && len(c.out.hdr) == msgHeaderLen { // in a body
			k := min(c.out.remaining, len(p))
			c.msg = append(c.msg, p[:k]...)
			c.out.remaining -= k
			p = p[k:]
		} else {
			k, done := c.out.header(p)
			p = p[k:]
			if !done {
				continue
			}
			c.msg = append(c.msg[:0], c.out.hdr...)
			c.rewrite = c.answersXattrWalk(c.out.typ(), c.out.tag()) && c.out.typ() == msgRlerror && c.out.remaining == rlerrorBodyLen
		}
		if c.out.remaining > 0 {
			continue
		}
		msg := c.msg
		if c.rewrite && binary.LittleEndian.Uint32(msg[msgHeaderLen:]) == uint32(unix.EINVAL) {
			binary.LittleEndian.PutUint32(msg[msgHeaderLen:], uint32(unix.ENODATA))
		}
		c.out.hdr, c.msg, c.rewrite = c.out.hdr[:0], msg[:0], false
		if cap(c.msg) > maxHeldReply {
			c.msg = nil // a large read's reply is not kept for ever
		}
		if _, err := c.w.Write(msg); err != nil {
			return total - len(p), err
		}
	}
	return total, nil
}

// answersXattrWalk reports whether a reply of type typ with tag answers a
// pending xattr walk, and forgets the walk.
func (c *xattrConn) answersXattrWalk(typ byte, tag uint16) bool {
	if typ != msgRlerror && typ != msgRxattrwalk {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.pending[tag] {
		return false
	}
	delete(c.pending, tag)
	return true
}
