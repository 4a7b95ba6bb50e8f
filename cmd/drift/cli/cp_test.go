package cli

import (
	"archive/tar"
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
	"github.com/driftcluster/drift/agent/files"
	"github.com/google/go-cmp/cmp"
)

func TestParseCopyArg(t *testing.T) {
	tests := []struct {
		in      string
		want    copyArg
		wantErr error
	}{
		{":", copyArg{raw: ":", remote: true, path: ".", dir: true}, nil},
		{":.", copyArg{raw: ":.", remote: true, path: ".", dir: true}, nil},
		{":work", copyArg{raw: ":work", remote: true, path: "work"}, nil},
		{":work/", copyArg{raw: ":work/", remote: true, path: "work", dir: true}, nil},
		{":work/sim/..", copyArg{raw: ":work/sim/..", remote: true, path: "work", dir: true}, nil},
		{":a/b.txt", copyArg{raw: ":a/b.txt", remote: true, path: "a/b.txt"}, nil},
		{":/cluster/work/x", copyArg{raw: ":/cluster/work/x", remote: true, path: "work/x"}, nil},
		{":../x", copyArg{}, api.ErrLeavesShared},
		{":work/../../x", copyArg{}, api.ErrLeavesShared},
		{":/etc/passwd", copyArg{}, api.ErrLeavesShared},
		{".", copyArg{raw: ".", path: ".", dir: true}, nil},
		{"./sim", copyArg{raw: "./sim", path: "sim"}, nil},
		{"results/", copyArg{raw: "results/", path: "results", dir: true}, nil},
		{"../x", copyArg{raw: "../x", path: "../x"}, nil},
		{"/abs/path", copyArg{raw: "/abs/path", path: "/abs/path"}, nil},
		{"..", copyArg{raw: "..", path: "..", dir: true}, nil},
		{"", copyArg{}, errUsage},
	}
	for _, tt := range tests {
		got, err := parseCopyArg(tt.in)
		if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
			t.Errorf("parseCopyArg(%q) error %v, want %v", tt.in, err, tt.wantErr)
			continue
		}
		if err == nil && got != tt.want {
			t.Errorf("parseCopyArg(%q) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
	if _, err := parseCopyArg(":../x"); err == nil || err.Error() != "../x: path leaves /cluster" {
		t.Errorf("parseCopyArg(\":../x\") error %q, want %q", err, "../x: path leaves /cluster")
	}
}

func TestPlanCopy(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantUpload bool
		wantSrcs   []string
		wantDest   string
		wantErr    string
	}{
		{"upload several", []string{"./sim", "./inputs", ":work/"}, true, []string{"sim", "inputs"}, "work", ""},
		{"download", []string{":work/results", "./results"}, false, []string{"work/results"}, "results", ""},
		{"download a file here", []string{":a/b.txt", "."}, false, []string{"a/b.txt"}, ".", ""},
		{"upload to the root", []string{"x", ":"}, true, []string{"x"}, ".", ""},
		{"one operand", []string{":work"}, false, nil, "", "want SRC... DEST"},
		{"both remote", []string{":a", ":b"}, false, nil, "", ":a and :b are both under /cluster"},
		{"neither remote", []string{"a", "b"}, false, nil, "", "neither a nor b is under /cluster"},
		{"mixed sources", []string{"a", ":b", "c"}, false, nil, "", "a and :b: the sources must all be under /cluster or all on this machine"},
		{"escaping dest", []string{"a", ":../b"}, false, nil, "", "../b: path leaves /cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := planCopy(tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("planCopy(%q) error %v, want one saying %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("planCopy(%q) error %v", tt.args, err)
			}
			var srcs []string
			for _, s := range p.srcs {
				srcs = append(srcs, s.path)
			}
			if p.upload != tt.wantUpload || !cmp.Equal(srcs, tt.wantSrcs) || p.dest.path != tt.wantDest {
				t.Errorf("planCopy(%q) = upload %v, %q → %q; want upload %v, %q → %q", tt.args, p.upload, srcs, p.dest.path, tt.wantUpload, tt.wantSrcs, tt.wantDest)
			}
		})
	}
}

func TestLanding(t *testing.T) {
	tests := []struct {
		name      string
		dest      string
		exists    bool
		isDir     bool
		srcDir    bool
		nsrc      int
		want      string
		wantMkdir bool
		wantErr   string
	}{
		{"into an existing directory", ":work", true, true, false, 1, "work/sim", false, ""},
		{"into an existing directory, slash", ":work/", true, true, true, 2, "work/sim", false, ""},
		{"into the root", ":", true, true, true, 1, "sim", false, ""},
		{"a new name", ":work/sim2", false, false, true, 1, "work/sim2", false, ""},
		{"a file replaces a file", ":work/old", true, false, false, 1, "work/old", false, ""},
		{"a slash makes the directory", ":work/", false, false, true, 1, "work/sim", true, ""},
		{"several into a new directory with a slash", ":work/", false, false, false, 3, "work/sim", true, ""},
		{"several into a missing directory", ":work", false, false, false, 2, "", false, ":work: no such directory (end it with / to make it)"},
		{"several onto a file", ":work/f", true, false, false, 2, "", false, ":work/f: not a directory, and several sources need one"},
		{"slash onto a file", ":work/f/", true, false, false, 1, "", false, ":work/f/: not a directory"},
		{"a directory onto a file", ":work/f", true, false, true, 1, "", false, ":work/f is a file: directory sim cannot replace it"},
		{"local, into the current directory", ".", true, true, false, 1, "sim", false, ""},
		{"local, a new name", "results", false, false, true, 1, "results", false, ""},
		{"local, into an existing directory", "out/", true, true, true, 1, "out/sim", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest, err := parseCopyArg(tt.dest)
			if err != nil {
				t.Fatal(err)
			}
			got, mkdir, err := landing(dest, tt.exists, tt.isDir, "sim", tt.srcDir, tt.nsrc)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("landing(%q) error %v, want %q", tt.dest, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want || mkdir != tt.wantMkdir {
				t.Errorf("landing(%q) = %q, mkdir %v, %v; want %q, mkdir %v", tt.dest, got, mkdir, err, tt.want, tt.wantMkdir)
			}
		})
	}
}

func TestProgressLine(t *testing.T) {
	tests := []struct {
		done, total int64
		elapsed     time.Duration
		stalled     bool
		want        string
	}{
		{0, 50 << 20, 0, false, "upload  0B / 50M  0%  0B/s  -"},
		{25 << 20, 50 << 20, 2 * time.Second, false, "upload  25M / 50M  50%  12M/s  2s left"},
		{10 << 20, 50 << 20, 10 * time.Second, false, "upload  10M / 50M  20%  1.0M/s  40s left"},
		{10 << 20, 50 << 20, 10 * time.Second, true, "upload  10M / 50M  20%  1.0M/s  stalled"},
		{50 << 20, 50 << 20, 5 * time.Second, false, "upload  50M / 50M  100%  10M/s  0s left"},
		{0, 0, time.Second, false, "upload  0B / 0B  100%  0B/s  -"},
	}
	for _, tt := range tests {
		if got := progressLine("upload", tt.done, tt.total, tt.elapsed, tt.stalled); got != tt.want {
			t.Errorf("progressLine(%d, %d, %v, %v) = %q, want %q", tt.done, tt.total, tt.elapsed, tt.stalled, got, tt.want)
		}
	}
}

// TestProgressTerminal: on a terminal the line is redrawn in place and
// ends with a summary; elsewhere nothing is written.
func TestProgressTerminal(t *testing.T) {
	var tty, plain strings.Builder
	p := (&copier{stderr: &tty, tty: true}).startProgress("upload", 1000)
	p.add(1000)
	time.Sleep(2 * progressEvery)
	p.finish("uploaded 1 file (1000B) to :x")
	out := tty.String()
	if !strings.HasPrefix(out, "\rupload  1000B / 1000B  100%") || !strings.Contains(out, "\ruploaded 1 file (1000B) to :x in ") || !strings.HasSuffix(out, "/s\n") {
		t.Errorf("terminal progress = %q, want a redrawn line, then the summary", out)
	}
	q := (&copier{stderr: &plain}).startProgress("upload", 1000)
	q.add(1000)
	q.finish("uploaded")
	if plain.Len() != 0 {
		t.Errorf("progress off a terminal wrote %q, want nothing", plain.String())
	}
}

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"cp", "./a b", ":it's", "x"})
	if want := `cp './a b' ':it'\''s' x`; got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}

// cpAgent is a real agent API with the files routes (and any override)
// serving root as /cluster, on a unix socket and on mutual TLS.
type cpAgent struct {
	root, sock, tcp, keyFile string
}

func startCPAgent(t *testing.T, srv *files.Server, override map[string]http.Handler) *cpAgent {
	t.Helper()
	key, err := clusterkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a := &cpAgent{root: srv.Root, keyFile: filepath.Join(dir, "cluster.key")}
	if err := clusterkey.WriteFile(a.keyFile, key); err != nil {
		t.Fatal(err)
	}
	if a.root == "" {
		a.root = t.TempDir()
		srv.Root = a.root
	}
	srv.Logger = slog.New(slog.DiscardHandler)
	routes := srv.Routes()
	for k, v := range override {
		routes[k] = v
	}
	s := &api.Server{Key: key, Logger: srv.Logger, Cluster: fakeCluster{}, Routes: routes,
		SocketPath: filepath.Join(dir, "api.sock"), TCPAddr: "127.0.0.1:0"}
	ls, err := s.Listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServeListeners(ctx, ls) }()
	t.Cleanup(func() { cancel(); <-done })
	a.sock, a.tcp = s.SocketPath, ls.TCP.Addr().String()
	return a
}

// cp runs drift cp with args through the unix socket (remote false) or
// mutual TLS, and returns its exit status and stderr.
func (a *cpAgent) cp(t *testing.T, remote bool, args ...string) (int, string) {
	t.Helper()
	flags := []string{"--socket", a.sock}
	if remote {
		flags = []string{"--cluster", a.tcp, "--key-file", a.keyFile}
	}
	var out, errOut strings.Builder
	code := Main(context.Background(), append(append([]string{"cp"}, flags...), args...), strings.NewReader(""), &out, &errOut)
	return code, errOut.String()
}

// entry is one file of a tree as TestCP compares them.
type entry struct {
	Mode  fs.FileMode
	Data  string
	MTime time.Time
}

// snapshot describes the tree at dir (links by target, files by
// contents, directories by mode and time); a temporary file left fails
// the test.
func snapshot(t *testing.T, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Errorf("walk %s: %v", p, err)
			return nil
		}
		if api.IsPartial(d.Name()) {
			t.Errorf("temporary file left: %s", p)
		}
		rel, _ := filepath.Rel(dir, p)
		fi, _ := d.Info()
		e := entry{Mode: fi.Mode() & (fs.ModeDir | fs.ModeSymlink | fs.ModePerm)}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Data, _ = os.Readlink(p)
		case fi.Mode().IsRegular():
			b, _ := os.ReadFile(p)
			e.Data, e.MTime = string(b), fi.ModTime().UTC()
		case rel != ".":
			e.MTime = fi.ModTime().UTC()
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	return out
}

// makeSim writes the tree a user uploads: a program, a subdirectory
// with a read-only input, a relative symlink.
func makeSim(t *testing.T, dir string) {
	t.Helper()
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	for _, d := range []string{"sim", "sim/lib", "inputs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(name, data string, mode fs.FileMode) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		os.Chtimes(p, mtime, mtime)
	}
	write("sim/run", "#!/bin/sh\necho running\n", 0o755)
	write("sim/lib/params.txt", "alpha=0.5\n", 0o444)
	write("inputs/a.csv", strings.Repeat("1,2,3\n", 1000), 0o644)
	if err := os.Symlink("lib/params.txt", filepath.Join(dir, "sim", "params")); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"sim/lib", "sim", "inputs"} {
		os.Chmod(filepath.Join(dir, d), 0o750)
		os.Chtimes(filepath.Join(dir, d), mtime, mtime)
	}
}

// TestCP runs drift cp against a real agent, over the unix socket and
// over mutual TLS: several sources into a directory that does not exist
// yet, the tree downloaded back under a new name and into a directory,
// one file into the current directory's place; modes, times and
// symlinks kept, nothing printed off a terminal.
func TestCP(t *testing.T) {
	for _, remote := range []bool{false, true} {
		name := map[bool]string{false: "unix", true: "tls"}[remote]
		t.Run(name, func(t *testing.T) {
			a := startCPAgent(t, &files.Server{AllowUnmounted: true}, nil)
			src := t.TempDir()
			makeSim(t, src)
			want := snapshot(t, src)

			code, stderr := a.cp(t, remote, filepath.Join(src, "sim"), filepath.Join(src, "inputs"), ":work/")
			if code != 0 || stderr != "" {
				t.Fatalf("drift cp SRC SRC :work/ = %d, %q; want 0 and nothing on stderr", code, stderr)
			}
			if diff := cmp.Diff(want, snapshot(t, filepath.Join(a.root, "work")), cmpIgnoreRoot); diff != "" {
				t.Errorf("uploaded tree differs (-want +got):\n%s", diff)
			}

			dst := t.TempDir()
			if code, stderr := a.cp(t, remote, ":work/sim", filepath.Join(dst, "results")); code != 0 {
				t.Fatalf("drift cp :work/sim NEW = %d, %s", code, stderr)
			}
			if code, stderr := a.cp(t, remote, ":/cluster/work/inputs", ":work/sim/run", dst); code != 0 {
				t.Fatalf("drift cp :work/inputs :work/sim/run DIR = %d, %s", code, stderr)
			}
			got := snapshot(t, dst)
			for k, v := range want {
				switch {
				case strings.HasPrefix(k, "sim"):
					k = "results" + strings.TrimPrefix(k, "sim")
				case k == ".":
					continue
				}
				if diff := cmp.Diff(v, got[k]); diff != "" {
					t.Errorf("downloaded %s differs (-want +got):\n%s", k, diff)
				}
			}
			if diff := cmp.Diff(want["sim/run"], got["run"]); diff != "" {
				t.Errorf("downloaded run differs (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpIgnoreRoot leaves out the top directory, whose time the copy sets
// as it likes.
var cmpIgnoreRoot = cmp.FilterPath(func(p cmp.Path) bool {
	mi, ok := p.Last().(cmp.MapIndex)
	return ok && mi.Key().String() == "."
}, cmp.Ignore())

// TestCPRefused: what drift cp refuses, and what it says.
func TestCPRefused(t *testing.T) {
	a := startCPAgent(t, &files.Server{AllowUnmounted: true}, nil)
	unmounted := startCPAgent(t, &files.Server{Node: "drift-a1b2c3"}, nil)
	src := t.TempDir()
	makeSim(t, src)
	if err := os.Symlink("/usr/lib", filepath.Join(src, "sim", "abs")); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(src, "esc"), 0o755)
	os.Symlink("../../../../x", filepath.Join(src, "esc", "up"))
	os.WriteFile(filepath.Join(a.root, "file"), []byte("x"), 0o644)
	sim, esc := filepath.Join(src, "sim"), filepath.Join(src, "esc")
	tests := []struct {
		name    string
		agent   *cpAgent
		args    []string
		wantErr string
	}{
		{"dest leaves /cluster", a, []string{sim, ":../x"}, "drift cp: ../x: path leaves /cluster\n"},
		{"source leaves /cluster", a, []string{":../x", src}, "drift cp: ../x: path leaves /cluster\n"},
		{"absolute symlink", a, []string{sim, ":"}, "drift cp: upload " + sim + ": " + sim + "/abs -> /usr/lib: an absolute symlink: path leaves /cluster (make it relative, or copy what it points to)\n"},
		{"escaping symlink", a, []string{esc, ":"}, "drift cp: upload " + esc + ": " + esc + "/up -> ../../../../x: path leaves /cluster\n"},
		{"missing source", a, []string{filepath.Join(src, "nope"), ":"}, "drift cp: upload " + src + "/nope: " + src + "/nope: no such file or directory\n"},
		{"missing remote", a, []string{":nope", src}, "drift cp: download :nope: /cluster/nope: no such file or directory\n"},
		{"remote file is not a directory", a, []string{":file/", src}, "drift cp: download :file/: not a directory\n"},
		{"directory onto a file", a, []string{esc, ":file"}, "drift cp: upload " + esc + ": :file is a file: directory esc cannot replace it\n"},
		{"not mounted", unmounted, []string{filepath.Join(src, "inputs", "a.csv"), ":"}, "drift cp: upload " + src + "/inputs/a.csv: /cluster is not mounted on drift-a1b2c3: check drift storage\n"},
		{"not mounted, download", unmounted, []string{":x", src}, "drift cp: download :x: /cluster is not mounted on drift-a1b2c3: check drift storage\n"},
		{"new name in a missing directory", a, []string{filepath.Join(src, "inputs", "a.csv"), ":data/a.csv"}, "drift cp: upload " + src + "/inputs/a.csv: :data/ does not exist: copy into a directory that does, or end the destination with / to have it made (drift cp " + src + "/inputs/a.csv :data/)\n"},
		{"local to local", a, []string{sim, src}, "drift cp: neither " + sim + " nor " + src + " is under /cluster"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr := tt.agent.cp(t, true, tt.args...)
			if code == 0 || !strings.Contains(stderr, tt.wantErr) {
				t.Errorf("drift cp %q = %d, %q; want an error %q", tt.args, code, stderr, tt.wantErr)
			}
		})
	}
	if got := snapshot(t, a.root); len(got) != 2 {
		t.Errorf("refused copies wrote to /cluster: %v", got)
	}
}

// TestCPDownloadBroken: the agent dies in the middle of a file: the
// files complete before it are there, the broken one is not, no
// temporary is left, and the error says what to run again.
func TestCPDownloadBroken(t *testing.T) {
	breaks := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		tw := tar.NewWriter(w)
		tw.WriteHeader(&tar.Header{Name: ".", Typeflag: tar.TypeDir, Mode: 0o755})
		tw.WriteHeader(&tar.Header{Name: "a", Typeflag: tar.TypeReg, Mode: 0o644, Size: 5})
		tw.Write([]byte("hello"))
		tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 10 << 20})
		tw.Write(make([]byte, 1<<20))
		tw.Flush()
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // the connection drops
	})
	a := startCPAgent(t, &files.Server{AllowUnmounted: true}, map[string]http.Handler{"GET /v1/files/tar": breaks})
	os.MkdirAll(filepath.Join(a.root, "results"), 0o755)
	dst := t.TempDir()
	code, stderr := a.cp(t, false, ":results", dst)
	want := "drift cp: download :results: the connection to the agent broke after 1.0M of 0B"
	if code != 1 || !strings.HasPrefix(stderr, want) || !strings.Contains(stderr, "nothing half-written was left under a file's name; to copy again: drift cp --socket ") {
		t.Errorf("drift cp of a broken download = %d, %q; want an error starting %q and saying what to rerun", code, stderr, want)
	}
	got := snapshot(t, dst)
	if got["results/a"].Data != "hello" {
		t.Errorf("results/a = %+v, want the complete file", got["results/a"])
	}
	if _, ok := got["results/big"]; ok {
		t.Errorf("results/big is there under its name")
	}
}
