package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/term"
)

const cpUsage = `[-q] SRC... DEST

A leading : names a path under /cluster, the shared storage every node
mounts: drift cp ./sim ./inputs :work/ uploads, drift cp :work/results .
downloads; ":" alone is /cluster itself. Directories are copied whole (-r
is accepted and changes nothing), with permission bits and modification
times; relative symlinks that stay inside /cluster are copied as symlinks,
and a tree holding any other symlink, a device, pipe or socket is refused.
DEST is a directory to copy into when it exists as one or ends in / (it is
then made if missing); otherwise it is the new name of the single SRC.
Each file is written under a hidden temporary name and renamed when
complete: a transfer that breaks leaves no partial file.`

func runCP(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("cp", cpUsage, stderr)
	fs.Bool("r", false, "accepted for scp's sake: directories are always copied whole")
	quiet := fs.Bool("q", false, "show no progress")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	plan, err := planCopy(fs.Args())
	if err != nil {
		if errors.Is(err, errUsage) {
			fs.Usage()
		}
		return err
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	cp := &copier{api: c, stderr: stderr, tty: !*quiet && isTerminal(stderr), rerun: "drift cp " + shellQuote(args)}
	if plan.upload {
		return cp.upload(ctx, plan)
	}
	return cp.download(ctx, plan)
}

// copyArg is one operand of drift cp.
type copyArg struct {
	raw    string // as typed
	remote bool   // it began with ":"
	path   string // remote: relative to /cluster, as api.SharedPath cleans it ("." is /cluster); local: cleaned
	dir    bool   // it must be a directory: a trailing slash, or "." or ".." as its last element
}

// parseCopyArg reads one operand: ":PATH" under /cluster, or a local path.
func parseCopyArg(s string) (copyArg, error) {
	a := copyArg{raw: s}
	p := s
	if rest, ok := strings.CutPrefix(s, ":"); ok {
		a.remote, p = true, rest
	} else if s == "" {
		return a, fmt.Errorf("an empty path: %w", errUsage)
	}
	last := p[strings.LastIndex(p, "/")+1:]
	a.dir = p == "" || strings.HasSuffix(p, "/") || last == "." || last == ".."
	if !a.remote {
		a.path = filepath.Clean(p)
		return a, nil
	}
	cp, err := api.SharedPath(p)
	if err != nil {
		return a, err
	}
	a.path = cp
	return a, nil
}

// copyPlan is what drift cp's operands ask for.
type copyPlan struct {
	upload bool
	srcs   []copyArg
	dest   copyArg
}

// planCopy reads drift cp's operands: sources on one side, the
// destination, last, on the other.
func planCopy(args []string) (copyPlan, error) {
	if len(args) < 2 {
		return copyPlan{}, fmt.Errorf("want SRC... DEST, one side beginning with : (a path under %s): %w", api.SharedRoot, errUsage)
	}
	var p copyPlan
	for i, s := range args {
		a, err := parseCopyArg(s)
		if err != nil {
			return copyPlan{}, err
		}
		if i == len(args)-1 {
			p.dest = a
		} else {
			p.srcs = append(p.srcs, a)
		}
	}
	p.upload = p.dest.remote
	for _, s := range p.srcs[1:] {
		if s.remote != p.srcs[0].remote {
			return copyPlan{}, fmt.Errorf("%s and %s: the sources must all be under %s or all on this machine: %w", p.srcs[0].raw, s.raw, api.SharedRoot, errUsage)
		}
	}
	for _, s := range p.srcs {
		switch {
		case s.remote && p.dest.remote:
			return copyPlan{}, fmt.Errorf("%s and %s are both under %s: copy there with drift run -- cp: %w", s.raw, p.dest.raw, api.SharedRoot, errUsage)
		case !s.remote && !p.dest.remote:
			return copyPlan{}, fmt.Errorf("neither %s nor %s is under %s (a leading : names a path there): %w", s.raw, p.dest.raw, api.SharedRoot, errUsage)
		}
	}
	return p, nil
}

// landing says where a source named base (a directory when srcDir) lands
// for dest, which exists or not and is a directory or not: inside dest
// when dest is a directory or must be one (a trailing slash, several
// sources), else dest itself, as cp and scp do. mkdir: dest must be made
// first (a trailing slash on a directory that does not exist).
func landing(dest copyArg, exists, isDir bool, base string, srcDir bool, nsrc int) (target string, mkdir bool, err error) {
	join := filepath.Join
	if dest.remote {
		join = path.Join
	}
	switch {
	case exists && isDir:
		return join(dest.path, base), false, nil
	case exists && dest.dir:
		return "", false, fmt.Errorf("%s: not a directory", dest.raw)
	case exists && nsrc > 1:
		return "", false, fmt.Errorf("%s: not a directory, and several sources need one", dest.raw)
	case exists && srcDir:
		return "", false, fmt.Errorf("%s is a file: directory %s cannot replace it", dest.raw, base)
	case exists:
		return dest.path, false, nil
	case dest.dir:
		return join(dest.path, base), true, nil
	case nsrc > 1:
		return "", false, fmt.Errorf("%s: no such directory (end it with / to make it)", dest.raw)
	}
	return dest.path, false, nil
}

// copier runs one drift cp.
type copier struct {
	api    *api.Client
	stderr io.Writer
	tty    bool   // show progress on stderr
	rerun  string // the command that copies again
}

// source is one SRC, resolved.
type source struct {
	arg    copyArg
	real   string // local: the path, symlinks resolved
	base   string // its name in a directory
	isDir  bool
	size   api.TreeSize
	target string // where it lands
}

func (c *copier) upload(ctx context.Context, plan copyPlan) error {
	names := make([]string, len(plan.srcs))
	for i, s := range plan.srcs {
		names[i] = s.raw
	}
	what := "upload " + strings.Join(names, " ")
	srcs := make([]*source, len(plan.srcs))
	for i, a := range plan.srcs {
		s, err := localSource(a)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		srcs[i] = s
	}
	st, err := c.api.StatFile(ctx, plan.dest.path, false)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", what, err)
	}
	var total api.TreeSize
	mkdir := false
	for _, s := range srcs {
		var mk bool
		if s.target, mk, err = landing(plan.dest, exists, st.Type == api.FileDir, s.base, s.isDir, len(srcs)); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		mkdir = mkdir || mk
		// The agent checks it all again; this refuses a tree before a
		// byte has moved.
		err := withRoot(s.real, func(root *os.Root, name string) error {
			var err error
			s.size, err = api.Tree{Root: root, Name: name, Shared: s.target, Display: s.arg.raw}.Scan(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("upload %s: %w", s.arg.raw, err)
		}
		total = addSize(total, s.size)
	}
	if mkdir {
		if err := c.api.MakeDir(ctx, plan.dest.path); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	} else if !exists {
		// A new name in a directory that is not there: say so before a
		// byte moves, and how to have it made.
		parent := path.Dir(plan.dest.path)
		if _, err := c.api.StatFile(ctx, parent, false); errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: :%s/ does not exist: copy into a directory that does, or end the destination with / to have it made (drift cp %s :%s/)",
				what, parent, strings.Join(names, " "), parent)
		}
	}
	p := c.startProgress("upload", total.Bytes)
	for _, s := range srcs {
		if err := c.put(ctx, s, p); err != nil {
			p.finish("")
			return c.broke(ctx, "upload "+s.arg.raw, err, p)
		}
	}
	p.finish(fmt.Sprintf("uploaded %s to %s", sizeText(total), plan.dest.raw))
	return nil
}

// localSource resolves a local SRC: a symlink named on the command line
// is followed, as cp and scp do.
func localSource(a copyArg) (*source, error) {
	abs, err := filepath.Abs(a.path)
	if err != nil {
		return nil, err
	}
	if abs == "/" {
		return nil, fmt.Errorf("%s: name a directory under /, not / itself", a.raw)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, pathError(a.raw, err)
	}
	if real == "/" {
		return nil, fmt.Errorf("%s leads to /: name a directory under /", a.raw)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return nil, pathError(a.raw, err)
	}
	switch {
	case a.dir && !fi.IsDir():
		return nil, fmt.Errorf("%s: not a directory", a.raw)
	case !fi.IsDir() && !fi.Mode().IsRegular():
		return nil, fmt.Errorf("%s: %w", a.raw, api.ErrUnsupportedFile)
	}
	return &source{arg: a, real: real, base: filepath.Base(abs), isDir: fi.IsDir()}, nil
}

// withRoot calls fn with p's directory opened as a root and p's name in it.
// p is absolute and not "/".
func withRoot(p string, fn func(root *os.Root, name string) error) error {
	dir, name := filepath.Dir(p), filepath.Base(p)
	root, err := os.OpenRoot(dir)
	if err != nil {
		return pathError(dir, err)
	}
	defer root.Close()
	return fn(root, name)
}

// put uploads one source, streaming its tree as it is read.
func (c *copier) put(ctx context.Context, s *source, p *progress) error {
	return withRoot(s.real, func(root *os.Root, name string) error {
		tree := api.Tree{Root: root, Name: name, Shared: s.target, Display: s.arg.raw, Progress: p.add}
		pr, pw := io.Pipe()
		var sent api.TreeSize
		var sendErr error
		done := make(chan struct{})
		go func() {
			defer close(done)
			sent, sendErr = tree.Send(ctx, pw)
			pw.CloseWithError(sendErr)
		}()
		got, putErr := c.api.PutFiles(ctx, s.target, pr)
		pr.CloseWithError(io.ErrClosedPipe) // the sender stops if the request ended early
		<-done
		switch {
		case sendErr != nil && !errors.Is(sendErr, io.ErrClosedPipe):
			return localError{sendErr}
		case putErr != nil:
			return putErr
		case got != sent:
			return fmt.Errorf("the agent wrote %s, but %s was sent", sizeText(got), sizeText(sent))
		}
		return nil
	})
}

func (c *copier) download(ctx context.Context, plan copyPlan) error {
	srcs := make([]*source, len(plan.srcs))
	var total api.TreeSize
	for i, a := range plan.srcs {
		st, err := c.api.StatFile(ctx, a.path, true)
		if err != nil {
			return fmt.Errorf("download %s: %w", a.raw, err)
		}
		switch {
		case a.dir && st.Type != api.FileDir:
			return fmt.Errorf("download %s: not a directory", a.raw)
		case st.Type == api.FileOther:
			return fmt.Errorf("download %s: %w", a.raw, api.ErrUnsupportedFile)
		}
		base := path.Base(a.path)
		if a.path == "." {
			base = path.Base(api.SharedRoot)
		}
		srcs[i] = &source{arg: a, base: base, isDir: st.Type == api.FileDir}
		if st.Tree != nil {
			srcs[i].size = *st.Tree
		}
		total = addSize(total, srcs[i].size)
	}
	fi, err := os.Stat(plan.dest.path)
	exists := err == nil
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return pathError(plan.dest.raw, err)
	}
	mkdir := false
	for _, s := range srcs {
		var mk bool
		if s.target, mk, err = landing(plan.dest, exists, exists && fi.IsDir(), s.base, s.isDir, len(srcs)); err != nil {
			return fmt.Errorf("download %s: %w", s.arg.raw, err)
		}
		mkdir = mkdir || mk
	}
	if mkdir {
		if err := os.Mkdir(plan.dest.path, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return pathError(plan.dest.raw, err)
		}
	}
	p := c.startProgress("download", total.Bytes)
	for _, s := range srcs {
		if err := c.get(ctx, s, p); err != nil {
			p.finish("")
			return c.broke(ctx, "download "+s.arg.raw, err, p)
		}
	}
	p.finish(fmt.Sprintf("downloaded %s to %s", sizeText(total), plan.dest.raw))
	return nil
}

// get downloads one source into its target on this machine.
func (c *copier) get(ctx context.Context, s *source, p *progress) error {
	abs, err := filepath.Abs(s.target)
	if err != nil {
		return err
	}
	if abs == "/" {
		return fmt.Errorf("%s: cannot replace /", s.target)
	}
	body, err := c.api.GetFiles(ctx, s.arg.path)
	if err != nil {
		return err
	}
	defer body.Close()
	return withRoot(abs, func(root *os.Root, name string) error {
		_, err := api.Tree{Root: root, Name: name, Display: s.target, Progress: p.add}.Receive(ctx, body)
		return err
	})
}

// localError is an error of this machine's files, not of the transfer.
type localError struct{ error }

func (e localError) Unwrap() error { return e.error }

// broke words an error that stopped a transfer: what to rerun when the
// connection broke or the user interrupted it.
func (c *copier) broke(ctx context.Context, what string, err error, p *progress) error {
	var se *api.StatusError
	var le localError
	switch {
	case errors.As(err, &le), errors.As(err, &se), errors.Is(err, api.ErrBadArchive),
		errors.Is(err, api.ErrLeavesShared), errors.Is(err, api.ErrUnsupportedFile):
		return fmt.Errorf("%s: %w", what, err)
	}
	sofar := humanBytes(uint64(p.done.Load())) + " of " + humanBytes(uint64(p.total))
	if ctx.Err() != nil {
		return fmt.Errorf("%s: interrupted after %s; nothing half-written was left under a file's name; to copy again: %s", what, sofar, c.rerun)
	}
	return fmt.Errorf("%s: the connection to the agent broke after %s (%w); nothing half-written was left under a file's name; to copy again: %s", what, sofar, err, c.rerun)
}

// pathError words a local *PathError as "NAME: what went wrong".
func pathError(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%s: %w", name, err)
}

func addSize(a, b api.TreeSize) api.TreeSize {
	return api.TreeSize{Files: a.Files + b.Files, Dirs: a.Dirs + b.Dirs, Links: a.Links + b.Links, Bytes: a.Bytes + b.Bytes}
}

// sizeText says how much a tree holds: "3 files (50M)".
func sizeText(n api.TreeSize) string {
	s := "s"
	if n.Files == 1 {
		s = ""
	}
	return fmt.Sprintf("%d file%s (%s)", n.Files, s, humanBytes(uint64(n.Bytes)))
}

// shellQuote writes args as a shell would read them back.
func shellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`*?[]{}()<>|&;#~!") {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progress shows a transfer's progress on a terminal: bytes done and
// total, rate and time left, redrawn in place; then one summary line.
// Off a terminal it shows nothing, as cp and scp in a script.
type progress struct {
	w     io.Writer
	verb  string
	total int64
	done  atomic.Int64
	start time.Time
	stop  chan struct{}
	wg    sync.WaitGroup
	width int // of the line last drawn
}

// progressEvery is how often the progress line is redrawn.
const progressEvery = 250 * time.Millisecond

func (c *copier) startProgress(verb string, total int64) *progress {
	p := &progress{verb: verb, total: total, start: time.Now()}
	if !c.tty {
		return p
	}
	p.w, p.stop = c.stderr, make(chan struct{})
	p.wg.Go(func() {
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		last, lastChange := int64(0), time.Now()
		for {
			select {
			case <-p.stop:
				return
			case now := <-t.C:
				done := p.done.Load()
				if done != last {
					last, lastChange = done, now
				}
				p.draw(progressLine(p.verb, done, p.total, now.Sub(p.start), now.Sub(lastChange) > 5*time.Second))
			}
		}
	})
	return p
}

func (p *progress) add(n int64) { p.done.Add(n) }

func (p *progress) draw(line string) {
	pad := max(p.width-len(line), 0)
	fmt.Fprintf(p.w, "\r%s%s", line, strings.Repeat(" ", pad))
	p.width = len(line)
}

// finish stops the display and, on a terminal, replaces it with summary
// and the time and rate ("" : just clears it).
func (p *progress) finish(summary string) {
	if p.w == nil {
		return
	}
	close(p.stop)
	p.wg.Wait()
	if summary == "" {
		p.draw("")
		fmt.Fprint(p.w, "\r")
		return
	}
	elapsed := time.Since(p.start)
	p.draw(fmt.Sprintf("%s in %s, %s/s", summary, elapsed.Round(100*time.Millisecond), humanBytes(uint64(rate(p.done.Load(), elapsed)))))
	fmt.Fprintln(p.w)
}

func rate(done int64, elapsed time.Duration) float64 {
	if elapsed <= 0 {
		return 0
	}
	return float64(done) / elapsed.Seconds()
}

// progressLine is one redraw: "upload  23M / 50M  46%  11M/s  2s left".
func progressLine(verb string, done, total int64, elapsed time.Duration, stalled bool) string {
	pct := 100
	if total > 0 {
		pct = int(min(done*100/total, 100))
	}
	r := rate(done, elapsed)
	left := "-"
	switch {
	case stalled:
		left = "stalled"
	case r > 0 && done <= total:
		left = humanDuration(time.Duration(float64(total-done)/r*float64(time.Second))) + " left"
		if done == total {
			left = "0s left"
		}
	}
	return fmt.Sprintf("%s  %s / %s  %d%%  %s/s  %s", verb, humanBytes(uint64(done)), humanBytes(uint64(total)), pct, humanBytes(uint64(r)), left)
}
