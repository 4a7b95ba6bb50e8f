package netboot

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	cfgboot "github.com/driftcluster/drift/configs/boot"
)

// HTTPConfig configures an HTTPServer.
type HTTPConfig struct {
	Logger *slog.Logger // nil: slog.Default()
	// Addr is the TCP address to listen on. "": ":80".
	Addr string
	// Dir holds the kernel and the initramfs (the boot medium's /boot);
	// required. Only the two files named here are served from it.
	Dir       string
	Kernel    string // file name of the kernel in Dir, e.g. "vmlinuz"
	Initramfs string // file name of the initramfs in Dir
	// Cmdline is the workers' kernel command line (WorkerCmdline).
	Cmdline string
	// JoinPort, if not 0, adds drift.join=HEAD:JoinPort to the command
	// line, HEAD being the address the client reached this server at.
	JoinPort int
	// EnrollPort and EnrollFingerprint, if set, add
	// drift.enroll_head=HEAD:EnrollPort drift.enroll_fp=EnrollFingerprint:
	// where a machine that boots without the cluster key asks the head for
	// it, and the SHA-256 of the certificate the head answers with there
	// (public: the script may be read by anyone on the segment).
	EnrollPort        int
	EnrollFingerprint string
	Tracker           *Tracker // records fetches and bytes; nil: none
}

// HTTPServer serves the network-boot files iPXE fetches: the iPXE script
// /boot.ipxe, rendered for each request with the address the client
// reached the head at, and the kernel and initramfs, with Range support.
type HTTPServer struct {
	cfg HTTPConfig
	log *slog.Logger
}

// NewHTTPServer returns a server for cfg; it does nothing until Run.
func NewHTTPServer(cfg HTTPConfig) *HTTPServer {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Addr == "" {
		cfg.Addr = ":80"
	}
	return &HTTPServer{cfg: cfg, log: cfg.Logger.With("service", "netboot-http")}
}

// Run listens on the configured address and serves until ctx ends.
func (s *HTTPServer) Run(ctx context.Context) error {
	l, err := net.Listen("tcp4", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("netboot http: listen on %s: %w", s.cfg.Addr, err)
	}
	return s.Serve(ctx, l)
}

// Serve serves on l until ctx ends, then returns nil.
func (s *HTTPServer) Serve(ctx context.Context, l net.Listener) error {
	root, err := os.OpenRoot(s.cfg.Dir)
	if err != nil {
		l.Close()
		return fmt.Errorf("netboot http: open %s: %w", s.cfg.Dir, err)
	}
	defer root.Close()
	srv := &http.Server{
		Handler:           s.handler(root),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	release := onDone(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
	})
	s.log.Info("netboot http: serving", "addr", l.Addr(), "dir", s.cfg.Dir)
	err = srv.Serve(l)
	release()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("netboot http: serve: %w", err)
}

func (s *HTTPServer) handler(root *os.Root) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /"+FileScript, s.script)
	for name, stage := range map[string]Stage{s.cfg.Kernel: StageKernel, s.cfg.Initramfs: StageInitramfs} {
		mux.HandleFunc("GET /"+name, func(w http.ResponseWriter, r *http.Request) { s.file(w, r, root, name, stage) })
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.log.Warn("netboot http: refused", "method", r.Method, "path", r.URL.Path, "peer", r.RemoteAddr)
		http.Error(w, "not found: the head serves /"+FileScript+", /"+s.cfg.Kernel+" and /"+s.cfg.Initramfs, http.StatusNotFound)
	})
	return mux
}

// script renders the iPXE script for the address the client reached us at.
func (s *HTTPServer) script(w http.ResponseWriter, r *http.Request) {
	host, ok := localHost(r)
	if !ok {
		http.Error(w, "cannot tell the server's address", http.StatusInternalServerError)
		return
	}
	cmdline := s.cfg.Cmdline
	if s.cfg.JoinPort != 0 {
		cmdline = strings.TrimSpace(cmdline + " drift.join=" + net.JoinHostPort(host.String(), strconv.Itoa(s.cfg.JoinPort)))
	}
	if s.cfg.EnrollPort != 0 && s.cfg.EnrollFingerprint != "" {
		cmdline = strings.TrimSpace(cmdline + " drift.enroll_head=" + net.JoinHostPort(host.String(), strconv.Itoa(s.cfg.EnrollPort)) +
			" drift.enroll_fp=" + s.cfg.EnrollFingerprint)
	}
	b, err := cfgboot.IPXEScript(cfgboot.IPXE{
		BaseURL:   "http://" + hostPort(r, host),
		Kernel:    s.cfg.Kernel,
		Initramfs: s.cfg.Initramfs,
		Cmdline:   cmdline,
	})
	if err != nil {
		s.log.Error("netboot http: render script", "err", err)
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	n, _ := w.Write(b)
	s.served(r, FileScript, StageScript, int64(n))
}

func (s *HTTPServer) file(w http.ResponseWriter, r *http.Request, root *os.Root, name string, stage Stage) {
	f, err := root.Open(name)
	if err != nil {
		s.log.Error("netboot http: open", "file", name, "err", err)
		http.Error(w, "the head cannot read "+name+" from its boot medium", http.StatusServiceUnavailable)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		http.Error(w, name+" is not a file", http.StatusServiceUnavailable)
		return
	}
	cw := &countingWriter{ResponseWriter: w}
	http.ServeContent(cw, r, name, fi.ModTime(), f)
	s.served(r, name, stage, cw.n)
}

func (s *HTTPServer) served(r *http.Request, name string, stage Stage, n int64) {
	s.log.Info("netboot http: sent", "file", name, "peer", r.RemoteAddr, "bytes", n, "range", r.Header.Get("Range"))
	if s.cfg.Tracker == nil {
		return
	}
	s.cfg.Tracker.AddBytes("http", n)
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil && r.Method == http.MethodGet {
		s.cfg.Tracker.Served(ap.Addr().Unmap(), stage)
	}
}

// localHost is the server address of r's connection.
func localHost(r *http.Request) (netip.Addr, bool) {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(la.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// hostPort is host with the connection's port unless it is 80.
func hostPort(r *http.Request, host netip.Addr) string {
	la, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if ap, err := netip.ParseAddrPort(la.String()); err == nil && ap.Port() != 80 {
		return netip.AddrPortFrom(host, ap.Port()).String()
	}
	return host.String()
}

type countingWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// WorkerCmdline is the kernel command line the head gives network-booted
// workers: its own (the consoles, any drift.storage, drift.lab=1 when a
// lab booted the head) without what only the head's boot medium or its
// role needs, plus drift.role=worker. It never carries the cluster key:
// the boot script is served to anyone who asks, so drift.key is dropped
// and the workers get the key by enrolment (drift.enroll_*).
func WorkerCmdline(head string) string {
	drop := map[string]bool{"BOOT_IMAGE": true, "initrd": true, "drift.role": true, "drift.dhcp": true,
		"drift.range": true, "drift.join": true, "ip": true, "root": true,
		"drift.key": true, "drift.enroll": true, "drift.enroll_head": true, "drift.enroll_fp": true}
	var out []string
	for _, f := range strings.Fields(head) {
		k, _, _ := strings.Cut(f, "=")
		if !drop[k] {
			out = append(out, f)
		}
	}
	return strings.Join(append(out, "drift.role=worker"), " ")
}
