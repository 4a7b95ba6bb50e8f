package labport

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Server runs commands that arrive on the lab port.
type Server struct {
	Logger *slog.Logger // nil: slog.Default()
	SysDir string       // "": /sys
	DevDir string       // "": /dev
}

// FindPort returns the device node of the virtio-serial port named name,
// looking it up in sysDir/class/virtio-ports/*/name.
func FindPort(sysDir, devDir, name string) (string, error) {
	ports, err := filepath.Glob(filepath.Join(sysDir, "class", "virtio-ports", "*", "name"))
	if err != nil {
		return "", err
	}
	for _, p := range ports {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(devDir, filepath.Base(filepath.Dir(p))), nil
		}
	}
	return "", ErrNotFound
}

// Run serves the lab port until ctx ends. It returns ErrNotFound at once
// when this machine has no lab port.
func (s *Server) Run(ctx context.Context) error {
	sys, dev := s.SysDir, s.DevDir
	if sys == "" {
		sys = "/sys"
	}
	if dev == "" {
		dev = "/dev"
	}
	path, err := FindPort(sys, dev, PortName)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open lab port %s: %w", path, err)
	}
	go func() {
		<-ctx.Done()
		f.Close()
	}()
	s.logger().Info("lab port open", "dev", path)
	return s.Serve(ctx, &eofRetryReader{ctx: ctx, r: f}, f)
}

// Serve reads requests from r and writes responses to w until r ends or
// ctx is done. Each request runs in its own goroutine; Serve waits for
// them before it returns. A malformed line is logged and dropped.
func (s *Server) Serve(ctx context.Context, r io.Reader, w io.Writer) error {
	var (
		wmu sync.Mutex
		wg  sync.WaitGroup
	)
	defer wg.Wait()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var req wireRequest
		if err := json.Unmarshal(line, &req); err != nil || req.ID == "" {
			s.logger().Warn("lab port: dropped malformed request", "len", len(line), "err", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp := s.run(ctx, &req)
			b, _ := json.Marshal(resp)
			wmu.Lock()
			defer wmu.Unlock()
			if _, err := w.Write(append(b, '\n')); err != nil {
				s.logger().Warn("lab port: write response", "id", req.ID, "err", err)
			}
		}()
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("read lab port: %w", err)
	}
	return ctx.Err()
}

func (s *Server) run(ctx context.Context, req *wireRequest) *wireResponse {
	resp := &wireResponse{ID: req.ID}
	if len(req.Argv) == 0 {
		resp.Error = "empty command"
		return resp
	}
	if req.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.Timeout)*time.Millisecond)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, req.Argv[0], req.Argv[1:]...)
	cmd.Env = append(os.Environ(), req.Env...)
	cmd.Stdin = bytes.NewReader(req.Stdin)
	stdout, stderr := &capped{max: MaxOutput}, &capped{max: MaxOutput}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = 2 * time.Second
	s.logger().Debug("lab port: exec", "id", req.ID, "argv", req.Argv)
	err := cmd.Run()
	resp.Stdout, resp.Stderr = stdout.buf.Bytes(), stderr.buf.Bytes()
	resp.Truncated = stdout.over || stderr.over
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		resp.ExitCode = ee.ExitCode()
	default:
		resp.Error = err.Error()
	}
	return resp
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// capped is a buffer that keeps at most max bytes.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.buf.Len(); len(p) > room {
		c.over = true
		c.buf.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.buf.Write(p)
}

// eofRetryReader turns the EOF a virtio-serial port reports while no host
// is connected into a short wait and another read.
type eofRetryReader struct {
	ctx context.Context
	r   io.Reader
}

func (e *eofRetryReader) Read(p []byte) (int, error) {
	for {
		n, err := e.r.Read(p)
		if n > 0 || (err != nil && err != io.EOF) {
			return n, err
		}
		select {
		case <-e.ctx.Done():
			return 0, io.EOF
		case <-time.After(pollEOF):
		}
	}
}
