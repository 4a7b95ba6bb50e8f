package files

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/google/go-cmp/cmp"
)

type noMembers struct{}

func (noMembers) Nodes(time.Time) []api.Node { return nil }

// syncBuffer collects logs from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// agent is a real API server with the files routes, on a unix socket and
// on loopback TCP with mutual TLS.
type agent struct {
	root   string // what it serves as /cluster
	sock   string
	tcp    string
	key    clusterkey.Key
	logs   *syncBuffer
	unix   *api.Client
	remote *api.Client
}

func startAgent(t *testing.T, srv *Server) *agent {
	t.Helper()
	key, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	a := &agent{root: srv.Root, key: key, logs: &syncBuffer{}}
	if a.root == "" {
		a.root = t.TempDir()
		srv.Root = a.root
	}
	srv.Logger = slog.New(slog.NewTextHandler(a.logs, nil))
	s := &api.Server{Cluster: noMembers{}, Key: key, Logger: srv.Logger, Routes: srv.Routes(),
		SocketPath: filepath.Join(t.TempDir(), "api.sock"), TCPAddr: "127.0.0.1:0"}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	a.sock, a.tcp = s.SocketPath, ls.TCP.Addr().String()
	a.unix = api.Local(a.sock)
	if a.remote, err = api.Remote(a.tcp, key); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *agent) clients() []struct {
	name string
	c    *api.Client
} {
	return []struct {
		name string
		c    *api.Client
	}{{"unix", a.unix}, {"tls", a.remote}}
}

// upload sends dir/name to p under the agent's /cluster, as drift cp does.
func upload(ctx context.Context, c *api.Client, dir, name, p string) (api.TreeSize, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return api.TreeSize{}, err
	}
	defer root.Close()
	pr, pw := io.Pipe()
	var sendErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, sendErr = api.Tree{Root: root, Name: name, Shared: p}.Send(ctx, pw)
		pw.CloseWithError(sendErr)
	}()
	n, err := c.PutFiles(ctx, p, pr)
	pr.CloseWithError(io.ErrClosedPipe)
	<-done
	if sendErr != nil && !errors.Is(sendErr, io.ErrClosedPipe) {
		return n, sendErr
	}
	return n, err
}

// download writes p under the agent's /cluster to dir/name.
func download(ctx context.Context, c *api.Client, p, dir, name string) (api.TreeSize, error) {
	body, err := c.GetFiles(ctx, p)
	if err != nil {
		return api.TreeSize{}, err
	}
	defer body.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return api.TreeSize{}, err
	}
	defer root.Close()
	return api.Tree{Root: root, Name: name}.Receive(ctx, body)
}

// file is one entry of a test tree.
type file struct {
	Mode  fs.FileMode // permission bits; with fs.ModeDir or fs.ModeSymlink for those
	Data  string      // a file's contents or a symlink's target
	MTime time.Time
}

var testTime = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func writeTree(t *testing.T, dir string, files map[string]file) {
	t.Helper()
	for _, name := range sortedNames(files) {
		f, p := files[name], filepath.Join(dir, name)
		var err error
		switch {
		case f.Mode&fs.ModeDir != 0:
			err = os.MkdirAll(p, 0o755)
		case f.Mode&fs.ModeSymlink != 0:
			err = os.Symlink(f.Data, p)
		default:
			err = os.WriteFile(p, []byte(f.Data), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	names := sortedNames(files)
	for i := len(names) - 1; i >= 0; i-- {
		f, p := files[names[i]], filepath.Join(dir, names[i])
		if f.Mode&fs.ModeSymlink != 0 {
			continue
		}
		if err := os.Chmod(p, f.Mode.Perm()); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, f.MTime, f.MTime); err != nil {
			t.Fatal(err)
		}
	}
}

func sortedNames(m map[string]file) []string {
	var names []string
	for k := range m {
		names = append(names, k)
	}
	for i := range names {
		for j := i + 1; j < len(names); j++ {
			if names[j] < names[i] {
				names[i], names[j] = names[j], names[i]
			}
		}
	}
	return names
}

// readTree describes what is under dir/top; every name under dir that
// is a leftover temporary file fails the test.
func readTree(t *testing.T, dir, top string) map[string]file {
	t.Helper()
	out := map[string]file{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if api.IsPartial(d.Name()) {
			t.Errorf("temporary file left: %s", p)
		}
		rel, _ := filepath.Rel(filepath.Join(dir, top), p)
		if strings.HasPrefix(rel, "..") {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f := file{Mode: fi.Mode() & (fs.ModeDir | fs.ModeSymlink | fs.ModePerm)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			f.Data, err = os.Readlink(p)
		case fi.Mode().IsRegular():
			b, rerr := os.ReadFile(p)
			f.Data, f.MTime, err = string(b), fi.ModTime().UTC(), rerr
		default:
			f.MTime = fi.ModTime().UTC()
		}
		out[filepath.ToSlash(rel)] = f
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUploadDownload uploads a tree with a program, a subdirectory, a
// read-only file and a relative symlink, over the unix socket and over
// mutual TLS, then downloads it back: the same bytes, modes, times and
// links at both ends, and no temporary file anywhere.
func TestUploadDownload(t *testing.T) {
	a := startAgent(t, &Server{AllowUnmounted: true})
	if err := os.Mkdir(filepath.Join(a.root, "work"), 0o755); err != nil {
		t.Fatal(err)
	}
	tree := map[string]file{
		".":               {Mode: fs.ModeDir | 0o750, MTime: testTime},
		"sim":             {Mode: 0o755, Data: "#!/bin/sh\necho simulated\n", MTime: testTime},
		"inputs":          {Mode: fs.ModeDir | 0o755, MTime: testTime.Add(time.Minute)},
		"inputs/a.csv":    {Mode: 0o444, Data: "1,2,3\n", MTime: testTime.Add(-time.Hour)},
		"inputs/deep":     {Mode: fs.ModeDir | 0o700, MTime: testTime},
		"inputs/deep/b":   {Mode: 0o600, Data: strings.Repeat("b", 600<<10), MTime: testTime},
		"inputs/latest":   {Mode: fs.ModeSymlink | 0o777, Data: "a.csv"},
		"inputs/deep/sim": {Mode: fs.ModeSymlink | 0o777, Data: "../../sim"},
	}
	src := t.TempDir()
	writeTree(t, filepath.Join(src), map[string]file{"job": {Mode: fs.ModeDir | 0o755}})
	writeTree(t, filepath.Join(src, "job"), tree)
	want := api.TreeSize{Files: 3, Dirs: 3, Links: 2, Bytes: int64(len(tree["sim"].Data) + len(tree["inputs/a.csv"].Data) + len(tree["inputs/deep/b"].Data))}
	for _, tc := range a.clients() {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			p := "work/" + tc.name
			n, err := upload(ctx, tc.c, src, "job", p)
			if err != nil {
				t.Fatalf("upload: %v", err)
			}
			if n != want {
				t.Errorf("upload wrote %+v, want %+v", n, want)
			}
			if diff := cmp.Diff(tree, readTree(t, a.root, p)); diff != "" {
				t.Errorf("uploaded tree differs (-want +got):\n%s", diff)
			}
			st, err := tc.c.StatFile(ctx, p, true)
			if err != nil {
				t.Fatalf("StatFile: %v", err)
			}
			if st.Type != api.FileDir || st.Mode != 0o750 || st.Tree == nil || *st.Tree != want {
				t.Errorf("StatFile(%q) = %+v (tree %+v), want a 0750 directory holding %+v", p, st, st.Tree, want)
			}
			dst := t.TempDir()
			if n, err = download(ctx, tc.c, p, dst, "back"); err != nil {
				t.Fatalf("download: %v", err)
			}
			if n != want {
				t.Errorf("download wrote %+v, want %+v", n, want)
			}
			if diff := cmp.Diff(tree, readTree(t, dst, "back")); diff != "" {
				t.Errorf("downloaded tree differs (-want +got):\n%s", diff)
			}
			// Again, over what is there: files are replaced, directories merged.
			if _, err := upload(ctx, tc.c, src, "job", p); err != nil {
				t.Fatalf("upload again: %v", err)
			}
			if diff := cmp.Diff(tree, readTree(t, a.root, p)); diff != "" {
				t.Errorf("tree uploaded twice differs (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLargeFile moves 50 MB each way over both transports and logs the
// throughput.
func TestLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	a := startAgent(t, &Server{AllowUnmounted: true})
	src := t.TempDir()
	data := make([]byte, 50<<20)
	rand.Read(data)
	if err := os.WriteFile(filepath.Join(src, "big.bin"), data, 0o755); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	for _, tc := range a.clients() {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			start := time.Now()
			if _, err := upload(ctx, tc.c, src, "big.bin", "big-"+tc.name); err != nil {
				t.Fatalf("upload: %v", err)
			}
			up := time.Since(start)
			dst := t.TempDir()
			start = time.Now()
			if _, err := download(ctx, tc.c, "big-"+tc.name, dst, "big.bin"); err != nil {
				t.Fatalf("download: %v", err)
			}
			down := time.Since(start)
			for _, p := range []string{filepath.Join(a.root, "big-"+tc.name), filepath.Join(dst, "big.bin")} {
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				fi, _ := os.Stat(p)
				if sha256.Sum256(b) != sum || fi.Mode().Perm() != 0o755 {
					t.Errorf("%s: %d bytes, mode %v: not the 50 MB executable sent", p, len(b), fi.Mode())
				}
			}
			mbps := func(d time.Duration) float64 { return float64(len(data)) / (1 << 20) / d.Seconds() }
			t.Logf("50 MiB over %s: upload %.0f MiB/s (%v), download %.0f MiB/s (%v)", tc.name, mbps(up), up.Round(time.Millisecond), mbps(down), down.Round(time.Millisecond))
		})
	}
}

// TestInterruptedUpload starts an upload by hand, sends half a file and
// closes the connection: nothing under the file's name, no temporary
// left, and the file sent before it complete.
func TestInterruptedUpload(t *testing.T) {
	a := startAgent(t, &Server{AllowUnmounted: true})
	dials := map[string]func() (net.Conn, error){
		"unix": func() (net.Conn, error) { return net.Dial("unix", a.sock) },
		"tls": func() (net.Conn, error) {
			cfg, err := api.ClientTLS(a.key)
			if err != nil {
				return nil, err
			}
			return tls.Dial("tcp", a.tcp, cfg)
		},
	}
	for name, dial := range dials {
		t.Run(name, func(t *testing.T) {
			conn, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			// The tar stream of a directory holding "a-done" (complete) and
			// "big" (cut after 3 MB of 20).
			src := t.TempDir()
			writeTree(t, src, map[string]file{
				"up":        {Mode: fs.ModeDir | 0o755},
				"up/a-done": {Mode: 0o644, Data: "complete"},
				"up/big":    {Mode: 0o644, Data: strings.Repeat("x", 20<<20)},
			})
			root, _ := os.OpenRoot(src)
			defer root.Close()
			var stream bytes.Buffer
			if _, err := (api.Tree{Root: root, Name: "up", Shared: "up-" + name}).Send(context.Background(), &stream); err != nil {
				t.Fatal(err)
			}
			cut := stream.Bytes()[:3<<20]
			w := bufio.NewWriter(conn)
			fmt.Fprintf(w, "PUT /v1/files/tar?path=up-%s HTTP/1.1\r\nHost: drift\r\nTransfer-Encoding: chunked\r\n\r\n", name)
			fmt.Fprintf(w, "%x\r\n", len(cut))
			w.Write(cut)
			w.WriteString("\r\n")
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // let the agent start writing
			conn.Close()
			waitLog(t, a.logs, "upload refused or broke off", "up-"+name)
			got := readTree(t, a.root, "up-"+name) // fails on a temporary left
			if _, ok := got["big"]; ok {
				t.Errorf("the cut file is there under its name: %d bytes", len(got["big"].Data))
			}
			if got["a-done"].Data != "complete" {
				t.Errorf("a-done = %q, want the complete file sent before the cut", got["a-done"].Data)
			}
		})
	}
}

// TestStalledUpload: a client that stops sending in the middle of a
// file, without closing its connection, is dropped after Idle and its
// file is not kept.
func TestStalledUpload(t *testing.T) {
	a := startAgent(t, &Server{AllowUnmounted: true, Idle: 300 * time.Millisecond})
	conn, err := net.Dial("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var stream bytes.Buffer
	tw := tar.NewWriter(&stream)
	tw.WriteHeader(&tar.Header{Name: ".", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 20})
	tw.Write(make([]byte, 4096))
	tw.Flush()
	fmt.Fprintf(conn, "PUT /v1/files/tar?path=stalled HTTP/1.1\r\nHost: drift\r\nContent-Length: %d\r\n\r\n", 2<<20)
	conn.Write(stream.Bytes())
	waitLog(t, a.logs, "upload refused or broke off", "stalled", "timeout")
	if got := readTree(t, a.root, "."); len(got) != 1 {
		t.Errorf("a stalled upload left %v", got)
	}
}

// waitLog waits until the agent has logged a line holding all of words.
func waitLog(t *testing.T, logs *syncBuffer, words ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(logs.String(), "\n") {
			ok := true
			for _, w := range words {
				ok = ok && strings.Contains(line, w)
			}
			if ok {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the agent did not log %q; its log:\n%s", words, logs.String())
}

// TestRefused asks for what the agent must refuse, through the typed
// client: the error says why, and maps to the sentinel.
func TestRefused(t *testing.T) {
	a := startAgent(t, &Server{AllowUnmounted: true})
	outside := t.TempDir()
	writeTree(t, outside, map[string]file{"secret": {Mode: 0o600, Data: "outside /cluster"}})
	writeTree(t, a.root, map[string]file{
		"work":          {Mode: fs.ModeDir | 0o755},
		"work/f":        {Mode: 0o644, Data: "a file"},
		"work/bad":      {Mode: fs.ModeDir | 0o755},
		"work/bad/a":    {Mode: 0o644, Data: "sent before the bad link"},
		"work/bad/z":    {Mode: fs.ModeSymlink, Data: "/etc/passwd"},
		"work/out":      {Mode: fs.ModeSymlink, Data: outside},
		"work/up":       {Mode: fs.ModeSymlink, Data: "../../" + filepath.Base(outside)},
		"work/ok":       {Mode: fs.ModeSymlink, Data: "f"},
		"work/loop":     {Mode: fs.ModeSymlink, Data: "loop"},
		"work/dangling": {Mode: fs.ModeSymlink, Data: "nothing"},
	})
	src := t.TempDir()
	writeTree(t, src, map[string]file{
		"f":   {Mode: 0o644, Data: strings.Repeat("f", 8<<20)},
		"d":   {Mode: fs.ModeDir | 0o755},
		"d/x": {Mode: 0o644, Data: "x"},
	})
	ctx := context.Background()
	tests := []struct {
		name    string
		do      func(c *api.Client) error
		wantErr error
		wantMsg string
	}{
		{"stat ..", func(c *api.Client) error { _, err := c.StatFile(ctx, "../x", false); return err }, api.ErrLeavesShared, "../x: path leaves /cluster"},
		{"stat missing", func(c *api.Client) error { _, err := c.StatFile(ctx, "work/nope", false); return err }, fs.ErrNotExist, "/cluster/work/nope: no such file or directory"},
		{"stat absolute symlink", func(c *api.Client) error { _, err := c.StatFile(ctx, "work/out", false); return err }, api.ErrLeavesShared, "/cluster/work/out: path leaves /cluster"},
		{"stat escaping symlink", func(c *api.Client) error { _, err := c.StatFile(ctx, "work/up", false); return err }, api.ErrLeavesShared, "/cluster/work/up: path leaves /cluster"},
		{"stat tree with absolute symlink", func(c *api.Client) error { _, err := c.StatFile(ctx, "work/bad", true); return err }, api.ErrLeavesShared, "/cluster/work/bad/z -> /etc/passwd: an absolute symlink"},
		{"download through escaping symlink", func(c *api.Client) error { _, err := download(ctx, c, "work/out", t.TempDir(), "x"); return err }, api.ErrLeavesShared, "path leaves /cluster"},
		{"download a symlink loop", func(c *api.Client) error { _, err := download(ctx, c, "work/loop", t.TempDir(), "x"); return err }, nil, "too many levels of symbolic links"},
		{"download dangling", func(c *api.Client) error { _, err := download(ctx, c, "work/dangling", t.TempDir(), "x"); return err }, fs.ErrNotExist, "/cluster/work/dangling: no such file or directory"},
		{"download, bad link met while streaming", func(c *api.Client) error { _, err := download(ctx, c, "work/bad", t.TempDir(), "x"); return err }, nil, "/cluster/work/bad/z -> /etc/passwd: an absolute symlink"},
		{"upload ..", func(c *api.Client) error { _, err := upload(ctx, c, src, "f", "../f"); return err }, api.ErrLeavesShared, "path leaves /cluster"},
		{"upload absolute", func(c *api.Client) error { _, err := upload(ctx, c, src, "f", "/etc/f"); return err }, api.ErrLeavesShared, "path leaves /cluster"},
		{"upload over /cluster", func(c *api.Client) error { _, err := upload(ctx, c, src, "d", "."); return err }, nil, "/cluster itself cannot be replaced"},
		{"upload into a missing directory", func(c *api.Client) error { _, err := upload(ctx, c, src, "f", "nodir/f"); return err }, fs.ErrNotExist, "/cluster/nodir: no such file or directory"},
		{"upload a directory over a file", func(c *api.Client) error { _, err := upload(ctx, c, src, "d", "work/f"); return err }, nil, "/cluster/work/f: exists and is not a directory"},
		{"upload a file over a directory", func(c *api.Client) error { _, err := upload(ctx, c, src, "f", "work/bad"); return err }, nil, "/cluster/work/bad: is a directory"},
		{"upload through an escaping symlink", func(c *api.Client) error { _, err := upload(ctx, c, src, "f", "work/up/f"); return err }, api.ErrLeavesShared, "path leaves /cluster"},
		{"upload absolute symlink", func(c *api.Client) error { _, err := putLink(ctx, c, "work/abs", "/etc"); return err }, api.ErrLeavesShared, "/cluster/work/abs/l -> /etc: an absolute symlink"},
		{"upload escaping symlink", func(c *api.Client) error { _, err := putLink(ctx, c, "work/esc", "../../../etc"); return err }, api.ErrLeavesShared, "/cluster/work/esc/l -> ../../../etc: path leaves /cluster"},
	}
	for _, tc := range a.clients() {
		for _, tt := range tests {
			t.Run(tc.name+"/"+tt.name, func(t *testing.T) {
				err := tt.do(tc.c)
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Errorf("got %v, want an error saying %q (%v)", err, tt.wantMsg, tt.wantErr)
				}
			})
		}
	}
	if b, err := os.ReadFile(filepath.Join(outside, "secret")); err != nil || string(b) != "outside /cluster" {
		t.Errorf("the file outside /cluster was touched: %q, %v", b, err)
	}
	if _, err := os.Lstat(filepath.Join(outside, "f")); err == nil {
		t.Errorf("an upload wrote outside /cluster")
	}
	readTree(t, a.root, ".") // no temporary left
}

// putLink uploads, at p, a directory holding the symlink l -> target, as
// a client that skips its own check would.
func putLink(ctx context.Context, c *api.Client, p, target string) (api.TreeSize, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: ".", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "l", Typeflag: tar.TypeSymlink, Linkname: target})
	tw.Close()
	return c.PutFiles(ctx, p, &buf)
}

// TestNotMounted: an agent whose /cluster is not mounted refuses every
// request, and says so in words to act on.
func TestNotMounted(t *testing.T) {
	tests := []struct {
		name    string
		srv     *Server
		wantMsg string
	}{
		{"bare mount point", &Server{Node: "drift-a1b2c3"}, "/cluster is not mounted on drift-a1b2c3: check drift storage"},
		{"mounter says no", &Server{Node: "drift-a1b2c3", AllowUnmounted: true, Ready: func() error { return errors.New("no alive head in the member list") }},
			"/cluster is not mounted on drift-a1b2c3 (no alive head in the member list): check drift storage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, tt.srv)
			src := t.TempDir()
			writeTree(t, src, map[string]file{"f": {Mode: 0o644, Data: "x"}})
			ctx := context.Background()
			calls := map[string]func() error{
				"stat":     func() error { _, err := a.remote.StatFile(ctx, "f", false); return err },
				"mkdir":    func() error { return a.remote.MakeDir(ctx, "d") },
				"upload":   func() error { _, err := upload(ctx, a.remote, src, "f", "f"); return err },
				"download": func() error { _, err := download(ctx, a.remote, "f", t.TempDir(), "f"); return err },
			}
			for name, call := range calls {
				if err := call(); !errors.Is(err, api.ErrNotMounted) || err.Error() != tt.wantMsg {
					t.Errorf("%s = %v, want %q", name, err, tt.wantMsg)
				}
			}
			if entries, _ := os.ReadDir(a.root); len(entries) != 0 {
				t.Errorf("the bare mount point got %v", entries)
			}
		})
	}
}

// TestMakeDir makes a directory, accepts one that exists, refuses a file
// in the way and a missing parent.
func TestMakeDir(t *testing.T) {
	a := startAgent(t, &Server{AllowUnmounted: true})
	writeTree(t, a.root, map[string]file{"f": {Mode: 0o644}})
	ctx := context.Background()
	tests := []struct {
		path    string
		wantErr string
	}{
		{"d", ""},
		{"d", ""},
		{"f", "/cluster/f: not a directory"},
		{"no/d", "/cluster/no/d: no such file or directory"},
		{"../d", "../d: path leaves /cluster"},
	}
	for _, tt := range tests {
		err := a.unix.MakeDir(ctx, tt.path)
		if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
			t.Errorf("MakeDir(%q) = %v, want %q", tt.path, err, tt.wantErr)
		}
	}
	if fi, err := os.Stat(filepath.Join(a.root, "d")); err != nil || !fi.IsDir() {
		t.Errorf("d is not a directory: %v", err)
	}
}
