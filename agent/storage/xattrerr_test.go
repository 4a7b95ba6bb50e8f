package storage

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// rawMsg encodes a 9P message: size[4] type[1] tag[2] body.
func rawMsg(typ byte, tag uint16, body ...[]byte) []byte {
	b := bytes.Join(body, nil)
	m := binary.LittleEndian.AppendUint32(nil, uint32(msgHeaderLen+len(b)))
	m = append(m, typ)
	m = binary.LittleEndian.AppendUint16(m, tag)
	return append(m, b...)
}

func u16(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.LittleEndian.AppendUint32(nil, v) }
func u64(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
func str(s string) []byte { return append(u16(uint16(len(s))), s...) }

// roundTrip sends one message and reads one reply.
func roundTrip(t *testing.T, c net.Conn, msg []byte) (typ byte, body []byte) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	hdr := make([]byte, msgHeaderLen)
	if _, err := io.ReadFull(c, hdr); err != nil {
		t.Fatalf("read reply header: %v", err)
	}
	body = make([]byte, binary.LittleEndian.Uint32(hdr)-msgHeaderLen)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("read reply body: %v", err)
	}
	return hdr[4], body
}

// TestServerMissingXattr: the kernel reads security.capability on every
// exec; a file without it must answer ENODATA, or exec fails with EINVAL.
func TestServerMissingXattr(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "prog"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	addr, _ := startServer(t, dir, allowOnly("127.0.0.1"))
	c := dialFrom(t, "127.0.0.1", addr)
	defer c.Close()
	const (
		tversion = 100
		tattach  = 104
		twalk    = 110
		rwalk    = 111
	)
	if typ, _ := roundTrip(t, c, rawMsg(tversion, 0xffff, u32(DefaultMsize), str("9P2000.L"))); typ != tversion+1 {
		t.Fatalf("Tversion answered with type %d", typ)
	}
	if typ, body := roundTrip(t, c, rawMsg(tattach, 1, u32(0), u32(^uint32(0)), str("root"), str(""), u32(0))); typ != tattach+1 {
		t.Fatalf("Tattach answered with type %d %x", typ, body)
	}
	if typ, body := roundTrip(t, c, rawMsg(twalk, 2, u32(0), u32(1), u16(1), str("prog"))); typ != rwalk {
		t.Fatalf("Twalk answered with type %d %x", typ, body)
	}
	typ, body := roundTrip(t, c, rawMsg(msgTxattrwalk, 3, u32(1), u32(2), str("security.capability")))
	if typ != msgRlerror || len(body) != 4 || binary.LittleEndian.Uint32(body) != uint32(unix.ENODATA) {
		t.Errorf("Txattrwalk security.capability = type %d body %x, want Rlerror ENODATA (%d)", typ, body, unix.ENODATA)
	}
	// A plain error reply to another request is left alone.
	typ, body = roundTrip(t, c, rawMsg(twalk, 4, u32(0), u32(5), u16(1), str("nonexistent")))
	if typ != msgRlerror || binary.LittleEndian.Uint32(body) != uint32(unix.ENOENT) {
		t.Errorf("Twalk nonexistent = type %d body %x, want Rlerror ENOENT", typ, body)
	}
}

// TestXattrConnSplitWrites feeds replies to xattrConn a byte at a time, as
// a writer of net.Buffers may.
func TestXattrConnSplitWrites(t *testing.T) {
	var out bytes.Buffer
	var in bytes.Buffer
	in.Write(rawMsg(msgTxattrwalk, 9, u32(1), u32(2), str("security.capability")))
	x := &xattrConn{r: &in, w: &out, pending: map[uint16]bool{}}
	buf := make([]byte, 3)
	for {
		if _, err := x.Read(buf); err != nil {
			break
		}
	}
	replies := [][]byte{
		rawMsg(rwalk9, 8, u16(0)),
		rawMsg(msgRlerror, 9, u32(uint32(unix.EINVAL))),
		rawMsg(msgRlerror, 9, u32(uint32(unix.EINVAL))), // tag 9 again, no longer a walk
	}
	for _, r := range replies {
		for i := range r {
			if _, err := x.Write(r[i : i+1]); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := bytes.Join([][]byte{replies[0], rawMsg(msgRlerror, 9, u32(uint32(unix.ENODATA))), replies[2]}, nil)
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("xattrConn wrote %x, want %x", out.Bytes(), want)
	}
}

const rwalk9 = 111

// writes records each Write it is given.
type writes [][]byte

func (w *writes) Write(p []byte) (int, error) {
	*w = append(*w, bytes.Clone(p))
	return len(p), nil
}

// TestXattrConnOneWritePerReply: the server writes a reply's header, body
// and payload apart; each reply must reach the socket in one write, as
// each write is a TCP segment of its own.
func TestXattrConnOneWritePerReply(t *testing.T) {
	var w writes
	x := &xattrConn{r: &bytes.Buffer{}, w: &w, pending: map[uint16]bool{}}
	payload := bytes.Repeat([]byte{'x'}, 100<<10)
	replies := [][]byte{
		rawMsg(117, 1, u32(uint32(len(payload))), payload), // Rread: count[4] data
		rawMsg(rwalk9, 2, u16(0)),
		rawMsg(125, 3), // Rclunk: no body
		rawMsg(msgRlerror, 4, u32(uint32(unix.ENOENT))),
	}
	for _, r := range replies {
		// As net.Buffers.WriteTo writes them: header, body, payload.
		for _, part := range [][]byte{r[:msgHeaderLen], r[msgHeaderLen:min(len(r), msgHeaderLen+4)], r[min(len(r), msgHeaderLen+4):]} {
			if len(part) == 0 {
				continue
			}
			if _, err := x.Write(part); err != nil {
				t.Fatal(err)
			}
		}
	}
	if len(w) != len(replies) {
		t.Fatalf("%d replies went out in %d writes, want one each", len(replies), len(w))
	}
	for i, r := range replies {
		if !bytes.Equal(w[i], r) {
			t.Errorf("write %d: %d bytes, want reply %d whole (%d bytes)", i, len(w[i]), i, len(r))
		}
	}
	// Two replies in one write still go out one by one, whole.
	w = nil
	if _, err := x.Write(append(bytes.Clone(replies[1]), replies[3]...)); err != nil {
		t.Fatal(err)
	}
	if len(w) != 2 || !bytes.Equal(w[0], replies[1]) || !bytes.Equal(w[1], replies[3]) {
		t.Errorf("two replies in one write went out as %d writes", len(w))
	}
}
