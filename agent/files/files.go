// Package files serves the cluster's shared storage over the agent's API,
// for `drift cp`: the stat, mkdir, download and upload endpoints that
// agent/api describes, answered from this node's own mount of /cluster.
// Every path is confined to the served directory with os.Root, whatever
// symlinks it holds; the storage must be mounted, so that nothing is ever
// written into a bare mount point; no lock is held while a transfer runs,
// and a peer that moves no byte for a minute is dropped. driftd adds its
// Routes to the API server.
package files

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// Server answers the files endpoints. Set the fields, then add Routes to
// the API server.
type Server struct {
	Root string // required: the directory served, api.SharedRoot on a node
	Node string // this node's name, for messages; "": "this node"

	// Ready reports whether the shared storage is mounted and healthy
	// now; an error refuses the request with ErrNotMounted and its words.
	// nil: no check beyond AllowUnmounted's.
	Ready func() error

	// AllowUnmounted serves Root even when it is not a mount point (tests
	// serve a t.TempDir()). false: a Root on the same device as its parent
	// is a bare mount point, and every request is refused.
	AllowUnmounted bool

	Idle   time.Duration // a transfer that moves no byte for this long is dropped; 0: one minute
	Logger *slog.Logger  // nil: slog.Default()
}

// Routes are the files endpoints, for api.Server.Routes.
func (s *Server) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"GET /v1/files/stat":   http.HandlerFunc(s.stat),
		"POST /v1/files/mkdir": http.HandlerFunc(s.mkdir),
		"GET /v1/files/tar":    http.HandlerFunc(s.download),
		"PUT /v1/files/tar":    api.LargeBody(http.HandlerFunc(s.upload)),
	}
}

func (s *Server) log() *slog.Logger {
	l := s.Logger
	if l == nil {
		l = slog.Default()
	}
	return l.With("svc", "files")
}

func (s *Server) node() string {
	if s.Node == "" {
		return "this node"
	}
	return s.Node
}

func (s *Server) idle() time.Duration {
	if s.Idle == 0 {
		return time.Minute
	}
	return s.Idle
}

// open checks that the storage is mounted and opens Root. The check is
// made on the directory opened, so a mount that goes away between the
// check and the open cannot send a write to the bare mount point.
func (s *Server) open() (*os.Root, error) {
	notMounted := func(why string) error {
		if why != "" {
			why = " (" + why + ")"
		}
		return refusal{fmt.Sprintf("%s is not mounted on %s%s: check drift storage", api.SharedRoot, s.node(), why), api.ErrNotMounted}
	}
	if s.Ready != nil {
		if err := s.Ready(); err != nil {
			return nil, notMounted(err.Error())
		}
	}
	root, err := os.OpenRoot(s.Root)
	if err != nil {
		return nil, notMounted(err.Error())
	}
	if s.AllowUnmounted {
		return root, nil
	}
	fi, err := root.Stat(".")
	if err != nil {
		root.Close()
		return nil, notMounted(err.Error())
	}
	pi, err := os.Stat(filepath.Dir(s.Root))
	if err != nil {
		root.Close()
		return nil, notMounted(err.Error())
	}
	if fi.Sys().(*syscall.Stat_t).Dev == pi.Sys().(*syscall.Stat_t).Dev {
		root.Close()
		return nil, notMounted("")
	}
	return root, nil
}

// request is what every files request starts with: the path asked,
// cleaned, and the opened root.
func (s *Server) request(w http.ResponseWriter, r *http.Request) (string, *os.Root, bool) {
	p, err := api.SharedPath(r.URL.Query().Get("path"))
	if err != nil {
		s.fail(w, err)
		return "", nil, false
	}
	root, err := s.open()
	if err != nil {
		s.fail(w, err)
		return "", nil, false
	}
	return p, root, true
}

func (s *Server) stat(w http.ResponseWriter, r *http.Request) {
	p, root, ok := s.request(w, r)
	if !ok {
		return
	}
	defer root.Close()
	t := api.Tree{Root: root, Name: p, Shared: p, Display: api.SharedName(p)}
	fi, err := root.Stat(p)
	if err != nil {
		s.fail(w, t.Error(err))
		return
	}
	st := api.FileStat{Path: p, Type: api.FileOther, Mode: uint32(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime()}
	switch {
	case fi.IsDir():
		st.Type = api.FileDir
	case fi.Mode().IsRegular():
		st.Type = api.FileRegular
	}
	if r.URL.Query().Get("tree") != "" {
		n, err := t.Scan(r.Context())
		if err != nil {
			s.fail(w, err)
			return
		}
		st.Tree = &n
	}
	api.WriteJSON(w, st)
}

func (s *Server) mkdir(w http.ResponseWriter, r *http.Request) {
	p, root, ok := s.request(w, r)
	if !ok {
		return
	}
	defer root.Close()
	t := api.Tree{Root: root, Name: p, Shared: p, Display: api.SharedName(p)}
	err := root.Mkdir(p, 0o755)
	if errors.Is(err, fs.ErrExist) {
		var fi fs.FileInfo
		if fi, err = root.Stat(p); err == nil && !fi.IsDir() {
			err = syscall.ENOTDIR
		}
	}
	if err != nil {
		s.fail(w, t.Error(err))
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) download(w http.ResponseWriter, r *http.Request) {
	p, root, ok := s.request(w, r)
	if !ok {
		return
	}
	defer root.Close()
	t := api.Tree{Root: root, Name: p, Shared: p, Display: api.SharedName(p)}
	if _, err := root.Stat(p); err != nil {
		s.fail(w, t.Error(err))
		return
	}
	start := time.Now()
	w.Header().Set("Content-Type", "application/x-tar")
	w.Header().Set("Trailer", api.TrailerError)
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	defer rc.SetWriteDeadline(time.Time{}) // the server sets no other: a kept-alive connection must not inherit it
	n, err := t.Send(r.Context(), &idleWriter{w: w, rc: rc, idle: s.idle()})
	log := s.log().With("path", api.SharedName(p), "from", r.RemoteAddr, "files", n.Files, "bytes", n.Bytes, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		w.Header().Set(api.TrailerError, oneLine(err.Error()))
		log.Warn("download broke off", "err", err)
		return
	}
	log.Info("download sent")
}

func (s *Server) upload(w http.ResponseWriter, r *http.Request) {
	p, root, ok := s.request(w, r)
	if !ok {
		return
	}
	defer root.Close()
	if p == "." {
		s.fail(w, refusal{api.SharedRoot + " itself cannot be replaced: name a path under it", syscall.EISDIR})
		return
	}
	start := time.Now()
	t := api.Tree{Root: root, Name: p, Shared: p, Display: api.SharedName(p)}
	rc := http.NewResponseController(w)
	n, err := t.Receive(r.Context(), &idleReader{r: r.Body, rc: rc, idle: s.idle()})
	log := s.log().With("path", api.SharedName(p), "from", r.RemoteAddr, "files", n.Files, "bytes", n.Bytes, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		log.Warn("upload refused or broke off", "err", err)
		s.fail(w, err)
		return
	}
	// The tar stream ended: read the body's end too, still under the idle
	// deadline, then lift it so that the connection may serve another
	// request. After an error the deadline stays, bounding what net/http
	// still reads of the body before it closes the connection.
	io.Copy(io.Discard, io.LimitReader(&idleReader{r: r.Body, rc: rc, idle: s.idle()}, 64<<10))
	rc.SetReadDeadline(time.Time{})
	log.Info("upload written")
	api.WriteJSON(w, n)
}

// fail answers err with the status that fits it.
func (s *Server) fail(w http.ResponseWriter, err error) {
	http.Error(w, oneLine(err.Error()), status(err))
}

// status is the HTTP status for err; api's client maps 404, 403 and 503
// back to fs.ErrNotExist, ErrLeavesShared and ErrNotMounted.
func status(err error) int {
	switch {
	case errors.Is(err, api.ErrNotMounted):
		return http.StatusServiceUnavailable
	case errors.Is(err, api.ErrLeavesShared):
		return http.StatusForbidden
	case errors.Is(err, api.ErrBadArchive), errors.Is(err, api.ErrUnsupportedFile), errors.Is(err, fs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, fs.ErrNotExist):
		return http.StatusNotFound
	case errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.EISDIR), errors.Is(err, fs.ErrExist), errors.Is(err, syscall.ENOTEMPTY):
		return http.StatusConflict
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage
	}
	return http.StatusInternalServerError
}

// refusal is an error in its own words that counts as err for status.
type refusal struct {
	msg string
	err error
}

func (r refusal) Error() string { return r.msg }
func (r refusal) Unwrap() error { return r.err }

func oneLine(s string) string {
	return strings.ReplaceAll(s, "\n", " ")
}

// idleReader reads an upload's body, dropping a client that sends
// nothing for idle.
type idleReader struct {
	r    io.Reader
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleReader) Read(p []byte) (int, error) {
	i.rc.SetReadDeadline(time.Now().Add(i.idle))
	return i.r.Read(p)
}

// idleWriter writes a download, dropping a client that takes nothing for
// idle.
type idleWriter struct {
	w    io.Writer
	rc   *http.ResponseController
	idle time.Duration
}

func (i *idleWriter) Write(p []byte) (int, error) {
	i.rc.SetWriteDeadline(time.Now().Add(i.idle))
	return i.w.Write(p)
}
