package labcli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// escapeByte is Ctrl-], which leaves the console (as in telnet).
const escapeByte = 0x1d

// Console attaches the terminal to a node's serial console until Ctrl-],
// the end of stdin, or the VM's exit.
func Console(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs, state := newFlagSet("console", "NODE", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ref, err := oneArg(fs, "NODE")
	if err != nil {
		fs.Usage()
		return fmt.Errorf("console: %w", err)
	}
	l, n, err := openNode(*state, ref, stderr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", l.ConsoleSock(n))
	if err != nil {
		return fmt.Errorf("console of node %d: %w (is the lab running? see drift-lab status)", n, err)
	}
	defer conn.Close()

	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		old, err := term.MakeRaw(int(f.Fd()))
		if err != nil {
			return fmt.Errorf("console: raw terminal: %w", err)
		}
		defer term.Restore(int(f.Fd()), old)
	}
	fmt.Fprintf(stderr, "connected to the console of node %d; press Ctrl-] to leave\r\n", n)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the node's output; ends when the connection closes
		defer wg.Done()
		defer cancel()
		io.Copy(stdout, conn)
	}()
	err = copyUntilEscape(ctx, conn, stdin)
	conn.Close()
	wg.Wait()
	fmt.Fprintf(stderr, "\r\nleft the console of node %d\r\n", n)
	return err
}

// copyUntilEscape copies in to out until Ctrl-], the end of in, or ctx.
func copyUntilEscape(ctx context.Context, out io.Writer, in io.Reader) error {
	if f, ok := in.(*os.File); ok {
		in = &pollReader{ctx: ctx, f: f}
	}
	buf := make([]byte, 4096)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			i := bytes.IndexByte(chunk, escapeByte)
			if i >= 0 {
				chunk = chunk[:i]
			}
			if _, werr := out.Write(chunk); werr != nil {
				return nil // the VM went away
			}
			if i >= 0 {
				return nil
			}
		}
		if errors.Is(err, io.EOF) || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("console: read input: %w", err)
		}
	}
}

// pollReader reads a file (the terminal) without blocking past ctx: it
// polls with a short timeout, so the goroutine reading it can always stop.
type pollReader struct {
	ctx context.Context
	f   *os.File
}

func (p *pollReader) Read(b []byte) (int, error) {
	for {
		if p.ctx.Err() != nil {
			return 0, io.EOF
		}
		fds := []unix.PollFd{{Fd: int32(p.f.Fd()), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return 0, err
		}
		if n > 0 {
			return p.f.Read(b)
		}
	}
}
