package labport

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Exec runs req on the guest behind the lab port whose host-side unix
// socket is sockPath, and returns what the command did. Callers are
// serialised with a lock file next to the socket, since a serial port
// carries one conversation. A non-zero exit is a Result, not an error.
func Exec(ctx context.Context, sockPath string, req Request) (*Result, error) {
	unlock, err := lock(ctx, sockPath+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sockPath)
	if err != nil {
		return nil, fmt.Errorf("connect to lab port %s: %w (is the VM running?)", sockPath, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()

	id := newID()
	wreq := wireRequest{ID: id, Request: req}
	if dl, ok := ctx.Deadline(); ok {
		wreq.Timeout = max(time.Until(dl).Milliseconds(), 1)
	}
	b, err := json.Marshal(wreq)
	if err != nil {
		return nil, fmt.Errorf("encode lab request: %w", err)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("send to lab port: %w", err)
	}
	sc := bufio.NewScanner(conn)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		var resp wireResponse
		if err := json.Unmarshal(sc.Bytes(), &resp); err != nil || resp.ID != id {
			continue // a stale answer to an earlier, abandoned request
		}
		if resp.Error != "" {
			return nil, fmt.Errorf("run %q on the node: %s", req.Argv, resp.Error)
		}
		return &resp.Result, nil
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("run %q on the node: %w", req.Argv, ctx.Err())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read from lab port: %w", err)
	}
	return nil, errors.New("lab port closed before the node answered (did the VM stop?)")
}

// lock takes an exclusive flock on path, waiting until ctx ends.
func lock(ctx context.Context, path string) (unlock func(), err error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock lab port: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock lab port %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("lock lab port %s: %w", path, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func newID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
