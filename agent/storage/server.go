package storage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hugelgupf/p9/p9"
)

// Server exports a directory over 9P2000.L on TCP to the cluster's members.
// Set the fields, then Run.
//
// Who may connect is decided by the peer's IP address alone (Allow): the
// 9P traffic itself is neither authenticated nor encrypted. README.md says
// what that means for a deployment.
type Server struct {
	Dir    string // required: the directory to export
	Addr   string // "": ":5640" on every address
	Logger *slog.Logger

	// Allow reports whether a peer may use the export: drift passes "is
	// an alive member of the cluster". Required.
	Allow func(netip.Addr) bool

	// Recheck is how often connections are checked against Allow again,
	// so that a node that left or died loses its connection; 0: 5s.
	Recheck time.Duration
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Run listens on Addr and serves until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	addr := s.Addr
	if addr == "" {
		addr = ":" + strconv.Itoa(DefaultPort)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("storage server listen on %s: %w", addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves the export on l until ctx ends; it closes l, and every
// connection, before it returns.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	defer l.Close()
	if s.Allow == nil {
		return errors.New("storage server: no Allow function")
	}
	root, err := os.OpenRoot(s.Dir)
	if err != nil {
		return fmt.Errorf("storage server: export %w", err)
	}
	defer root.Close()
	log := s.logger().With("svc", "storage-server")
	srv := p9.NewServer(&exportFS{root: root})
	recheck := s.Recheck
	if recheck == 0 {
		recheck = 5 * time.Second
	}

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]netip.Addr{}
	)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(recheck)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				l.Close()
				mu.Lock()
				for c := range conns {
					c.Close()
				}
				mu.Unlock()
				return
			case <-t.C:
				mu.Lock()
				for c, a := range conns {
					if !s.Allow(a) {
						log.Warn("closed storage connection from " + a.String() + ": no longer a cluster member")
						c.Close()
					}
				}
				mu.Unlock()
			}
		}
	}()
	log.Info("storage server exporting", "dir", s.Dir, "addr", l.Addr().String())
	var acceptErr error
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() == nil {
				acceptErr = fmt.Errorf("storage server accept on %s: %w", l.Addr(), err)
			}
			break
		}
		peer := peerAddr(c)
		if !peer.IsValid() || !s.Allow(peer) {
			log.Warn("refused storage connection from " + c.RemoteAddr().String() + ": not a cluster member")
			c.Close()
			continue
		}
		mu.Lock()
		conns[c] = peer
		mu.Unlock()
		log.Info("storage connection", "from", c.RemoteAddr().String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			xc := newXattrConn(c)
			srv.Handle(xc, xc)
			c.Close()
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			log.Info("storage connection closed", "from", c.RemoteAddr().String())
		}()
	}
	cancel()
	wg.Wait()
	return acceptErr
}

// peerAddr is the IP address at the other end of c, IPv4 unmapped.
func peerAddr(c net.Conn) netip.Addr {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return netip.Addr{}
	}
	return ta.AddrPort().Addr().Unmap()
}
