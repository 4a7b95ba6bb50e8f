package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// The files endpoints let `drift cp` copy between a user's machine and the
// cluster's shared storage through any agent, which serves them from its
// own mount of SharedRoot (agent/files implements them):
//
//	GET  /v1/files/stat?path=P[&tree=1]  FileStat of P (tree: what a copy of it moves)
//	POST /v1/files/mkdir?path=P          make directory P (its parent must exist)
//	GET  /v1/files/tar?path=P            P as a tar stream (see Tree); an error met
//	                                     while streaming comes in the trailer Drift-Error
//	PUT  /v1/files/tar?path=P            write the tar stream in the body at P;
//	                                     answers the TreeSize written
//
// P is a path relative to SharedRoot ("." is SharedRoot itself), as
// SharedPath cleans it.

// SharedRoot is where every node mounts the shared storage; drift cp's
// ":PATH" names PATH under it.
const SharedRoot = "/cluster"

// TrailerError is the HTTP trailer that carries an error the agent met
// while streaming a download, after the status line had gone.
const TrailerError = "Drift-Error"

// Errors of the files endpoints, for errors.Is.
var (
	// ErrLeavesShared reports a path or symlink that leads out of SharedRoot.
	ErrLeavesShared = errors.New("path leaves " + SharedRoot)
	// ErrUnsupportedFile reports a device, named pipe, socket or hard link.
	ErrUnsupportedFile = errors.New("drift cp copies only regular files, directories and symlinks")
	// ErrBadArchive reports a tar stream that is not one Tree writes.
	ErrBadArchive = errors.New("bad file archive")
	// ErrNotMounted reports an agent whose shared storage is not mounted,
	// which therefore refuses to read or write it.
	ErrNotMounted = errors.New(SharedRoot + " is not mounted")
)

// FileStat is GET /v1/files/stat: a file or directory under SharedRoot. A
// symlink is followed (inside SharedRoot only).
type FileStat struct {
	Path    string    `json:"path"` // relative to SharedRoot; "." is SharedRoot
	Type    string    `json:"type"` // FileRegular, FileDir or FileOther
	Mode    uint32    `json:"mode"` // permission bits
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	Tree    *TreeSize `json:"tree,omitempty"` // with tree=1: what a copy of it moves
}

// FileStat types.
const (
	FileRegular = "file"
	FileDir     = "dir"
	FileOther   = "other"
)

// TreeSize counts a tree: what a copy moves (GET /v1/files/stat?tree=1)
// or what was written (PUT /v1/files/tar).
type TreeSize struct {
	Files int   `json:"files"`
	Dirs  int   `json:"dirs"`
	Links int   `json:"links"`
	Bytes int64 `json:"bytes"` // of the regular files
}

// SharedPath cleans p, a path under SharedRoot as a user writes it after
// drift cp's ":" ("work/sim"; "" or "." for SharedRoot itself; or absolute
// under it, "/cluster/work/sim"), into the relative form the files
// endpoints take ("work/sim", "."). A path that leads out of SharedRoot
// ("../x", "/etc", "a/../../x") is ErrLeavesShared.
func SharedPath(p string) (string, error) {
	if strings.HasPrefix(p, "/") {
		rest, ok := strings.CutPrefix(path.Clean(p), SharedRoot)
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			return "", fmt.Errorf("%s: %w", p, ErrLeavesShared)
		}
		p = strings.TrimPrefix(rest, "/")
	}
	c := path.Clean(p)
	if c != "." && !filepath.IsLocal(c) {
		return "", fmt.Errorf("%s: %w", p, ErrLeavesShared)
	}
	return c, nil
}

// SharedName is how messages name p, a path SharedPath cleaned: its
// absolute path on a node, e.g. /cluster/work/sim.
func SharedName(p string) string {
	return path.Join(SharedRoot, p)
}

func filesPath(endpoint, p string, extra ...string) string {
	q := url.Values{"path": {p}}
	for i := 0; i+1 < len(extra); i += 2 {
		q.Set(extra[i], extra[i+1])
	}
	return endpoint + "?" + q.Encode()
}

// StatFile describes p (a path SharedPath cleaned) on the shared storage
// of the agent the client talks to; with tree, it also counts what a copy
// of p moves, and refuses a tree that holds what cannot be copied (a
// symlink out of SharedRoot, a device).
func (c *Client) StatFile(ctx context.Context, p string, tree bool) (FileStat, error) {
	var out FileStat
	q := filesPath("/v1/files/stat", p)
	if tree {
		q = filesPath("/v1/files/stat", p, "tree", "1")
	}
	return out, filesError(c.Call(ctx, http.MethodGet, q, nil, &out))
}

// MakeDir makes the directory p under SharedRoot; one that exists is fine.
func (c *Client) MakeDir(ctx context.Context, p string) error {
	return filesError(c.Call(ctx, http.MethodPost, filesPath("/v1/files/mkdir", p), nil, nil))
}

// GetFiles returns p under SharedRoot as a tar stream that Tree.Receive
// unpacks. The caller closes it. The transfer has no overall time limit:
// it runs as long as ctx allows. Reading it to its end reports an error
// the agent met after the stream had started.
func (c *Client) GetFiles(ctx context.Context, p string) (io.ReadCloser, error) {
	q := filesPath("/v1/files/tar", p)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+q, nil)
	if err != nil {
		return nil, fmt.Errorf("api %s: %w", q, err)
	}
	resp, err := c.callClient().Do(req)
	if err != nil {
		return nil, c.dialError(err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, filesError(statusError(resp))
	}
	return &trailerReader{resp: resp}, nil
}

// PutFiles writes the tar stream r (as Tree.Send writes it) at p under
// SharedRoot and returns what the agent wrote. The transfer has no overall
// time limit: it runs as long as ctx allows.
func (c *Client) PutFiles(ctx context.Context, p string, r io.Reader) (TreeSize, error) {
	q := filesPath("/v1/files/tar", p)
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.base+q, r)
	if err != nil {
		return TreeSize{}, fmt.Errorf("api %s: %w", q, err)
	}
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := c.callClient().Do(req)
	if err != nil {
		return TreeSize{}, c.dialError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return TreeSize{}, filesError(statusError(resp))
	}
	var out TreeSize
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return out, fmt.Errorf("api %s at %s: decode: %w", q, c.target, err)
	}
	return out, nil
}

// trailerReader is a download's body: at its end, the error the agent
// put in the trailer, if any.
type trailerReader struct {
	resp *http.Response
}

func (t *trailerReader) Read(p []byte) (int, error) {
	n, err := t.resp.Body.Read(p)
	if errors.Is(err, io.EOF) {
		if msg := t.resp.Trailer.Get(TrailerError); msg != "" {
			return n, errors.New(msg)
		}
	}
	return n, err
}

func (t *trailerReader) Close() error { return t.resp.Body.Close() }

// filesError gives a files endpoint's refusal the sentinel its status
// stands for.
func filesError(err error) error {
	var se *StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Code {
	case http.StatusNotFound:
		se.Err = fs.ErrNotExist
	case http.StatusServiceUnavailable:
		se.Err = ErrNotMounted
	case http.StatusForbidden:
		se.Err = ErrLeavesShared
	}
	return err
}
