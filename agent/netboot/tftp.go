package netboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// TFTPConfig configures a TFTPServer.
type TFTPConfig struct {
	Logger *slog.Logger // nil: slog.Default()
	// Dir is the PXE tree served (the iPXE binaries); required. Nothing
	// outside it is served, symlinks that leave it included.
	Dir string
	// Addr is the UDP address to listen on. "": ":69".
	Addr    string
	Tracker *Tracker // records fetches of the iPXE binaries; nil: none
	// Timeout is how long a transfer waits for an acknowledgement before
	// sending again (5 tries). 0: one second, so that a stalled transfer
	// gives up in about 6 s; Shutdown waits for transfers, so this bounds
	// it too.
	Timeout time.Duration
}

// TFTPServer serves a directory read-only over TFTP (pin/tftp). Write
// requests, paths that leave the directory and unknown files are refused
// with a TFTP error and logged.
type TFTPServer struct {
	cfg   TFTPConfig
	log   *slog.Logger
	drops *dropLog
}

// Errors the TFTP server refuses requests with; the client sees the text.
var (
	ErrTFTPReadOnly = errors.New("read-only server: write requests are refused")
	ErrTFTPPath     = errors.New("path refused: only plain names inside the PXE tree are served")
)

// NewTFTPServer returns a server for cfg; it does nothing until Run.
func NewTFTPServer(cfg TFTPConfig) *TFTPServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Addr == "" {
		cfg.Addr = ":69"
	}
	log := cfg.Logger.With("service", "tftp")
	return &TFTPServer{cfg: cfg, log: log, drops: &dropLog{log: log, what: "tftp: request refused"}}
}

// Run listens on the configured address and serves until ctx ends.
func (s *TFTPServer) Run(ctx context.Context) error {
	conn, err := net.ListenPacket("udp4", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("tftp: listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, conn)
}

// Serve serves on conn until ctx ends, then waits for the transfers under
// way (each bounded by the retry timeout) and returns nil.
func (s *TFTPServer) Serve(ctx context.Context, conn net.PacketConn) error {
	root, err := os.OpenRoot(s.cfg.Dir)
	if err != nil {
		conn.Close()
		return fmt.Errorf("tftp: open PXE tree: %w", err)
	}
	defer root.Close()
	srv := tftp.NewServer(
		func(name string, rf io.ReaderFrom) error { return s.read(root, name, rf) },
		func(name string, wt io.WriterTo) error { return s.refuseWrite(name, wt) },
	)
	timeout := s.cfg.Timeout
	if timeout <= 0 {
		timeout = time.Second
	}
	srv.SetTimeout(timeout)
	srv.SetRetries(5)
	srv.SetBackoff(func(attempt int) time.Duration { return time.Duration(attempt+1) * timeout / 20 })
	srv.SetBlockSize(1428) // fits a 1500-byte MTU; iPXE and UEFI ask for blksize
	release := onDone(ctx, func() { srv.Shutdown(); conn.Close() })
	s.log.Info("tftp: serving", "dir", s.cfg.Dir, "addr", conn.LocalAddr())
	err = srv.Serve(conn)
	release()
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tftp: serve: %w", err)
	}
	return errors.New("tftp: server stopped")
}

// read serves one read request.
func (s *TFTPServer) read(root *os.Root, name string, rf io.ReaderFrom) error {
	peer := peerOf(rf)
	f, err := openInTree(root, name)
	if err != nil {
		s.refuse(peer, "read", name, err)
		return err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			ot.SetSize(fi.Size())
		}
	}
	n, err := rf.ReadFrom(f)
	if s.cfg.Tracker != nil {
		s.cfg.Tracker.AddBytes("tftp", n)
	}
	if err != nil {
		s.log.Warn("tftp: transfer failed", "file", name, "peer", peer, "sent", n, "err", err)
		return err
	}
	s.log.Info("tftp: sent", "file", name, "peer", peer, "bytes", n)
	if s.cfg.Tracker != nil && (name == FileBIOS || name == FileUEFI) {
		if a, ok := netip.AddrFromSlice(peer.IP); ok {
			s.cfg.Tracker.Served(a.Unmap(), StageIPXE)
		}
	}
	return nil
}

func (s *TFTPServer) refuseWrite(name string, wt io.WriterTo) error {
	var peer net.UDPAddr
	if it, ok := wt.(tftp.IncomingTransfer); ok {
		peer = it.RemoteAddr()
	}
	s.refuse(peer, "write", name, ErrTFTPReadOnly)
	return ErrTFTPReadOnly
}

func (s *TFTPServer) refuse(peer net.UDPAddr, op, name string, err error) {
	s.drops.drop("op", op, "file", name, "peer", peer.String(), "why", err)
}

func peerOf(rf io.ReaderFrom) net.UDPAddr {
	if ot, ok := rf.(tftp.OutgoingTransfer); ok {
		return ot.RemoteAddr()
	}
	return net.UDPAddr{}
}

// openInTree opens name, a TFTP request's file name, inside root. It
// accepts only a relative slash-separated path of plain names (no "..",
// no absolute path, no backslash, no control bytes) naming a regular
// file; root refuses symlinks that lead out of the tree.
func openInTree(root *os.Root, name string) (*os.File, error) {
	if err := checkTFTPName(name); err != nil {
		return nil, err
	}
	f, err := root.Open(name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: file not found", name)
		}
		return nil, fmt.Errorf("%s: %w (%v)", name, ErrTFTPPath, err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: not a file", name)
	}
	return f, nil
}

// checkTFTPName refuses names that are not plain relative paths.
func checkTFTPName(name string) error {
	if name == "" || len(name) > 255 || strings.HasPrefix(name, "/") || strings.ContainsAny(name, "\\:") {
		return fmt.Errorf("%q: %w", name, ErrTFTPPath)
	}
	for _, r := range name {
		if r < ' ' || r == 0x7f {
			return fmt.Errorf("%q: %w", name, ErrTFTPPath)
		}
	}
	for _, part := range strings.Split(name, "/") {
		if part == "" || part == "." || part == ".." {
			return fmt.Errorf("%q: %w", name, ErrTFTPPath)
		}
	}
	return nil
}
