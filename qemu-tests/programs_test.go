package qemutests

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/driftcluster/drift/agent/labport"
	"github.com/driftcluster/drift/imagebuild"
	"github.com/driftcluster/drift/qemu-tests/lab"
)

// workstation is a user's machine beside the lab: the host's drift binary
// and the cluster key, in the lab's network.
type workstation struct {
	l     *lab.Lab
	drift string
	flags []string // --cluster ADDR --key-file F
}

func newWorkstation(t *testing.T, l *lab.Lab, img lab.Image) *workstation {
	t.Helper()
	return &workstation{l: l, drift: buildDrift(t),
		flags: []string{"--cluster", readyAddr(t, l, 1), "--key-file", filepath.Join(img.Dir, imagebuild.KeyName)}}
}

// run runs drift ARGS on the workstation, in dir ("" : a fresh empty
// directory), with stdin, and returns what it did.
func (w *workstation) run(ctx context.Context, t *testing.T, dir string, stdin io.Reader, args ...string) *labport.Result {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := w.l.Command(ctx, w.drift, append(append([]string{}, args[:1]...), append(w.flags, args[1:]...)...)...)
	cmd.Dir, cmd.Stdin = dir, stdin
	cmd.Env = append(os.Environ(), "PATH=/home/user/bin:/usr/bin:/bin") // a workstation's PATH, not the node's
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		t.Fatalf("drift %q: %v", args, err)
	}
	res := &labport.Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: cmd.ProcessState.ExitCode()}
	t.Logf("workstation: drift %s: exit %d, %d bytes out, stderr %q", strings.Join(args, " "), res.ExitCode, len(res.Stdout), truncateLog(res.Stderr))
	return res
}

// ok runs drift ARGS and fails the test unless it exits 0.
func (w *workstation) ok(ctx context.Context, t *testing.T, dir string, args ...string) string {
	t.Helper()
	res := w.run(ctx, t, dir, nil, args...)
	if res.ExitCode != 0 {
		t.Fatalf("drift %s exited %d: %s", strings.Join(args, " "), res.ExitCode, res.Stderr)
	}
	return string(res.Stdout)
}

// background starts drift ARGS on the workstation.
func (w *workstation) background(ctx context.Context, t *testing.T, args ...string) *bgExec {
	t.Helper()
	return startHost(ctx, t, w.l, w.drift, append(append([]string{}, args[:1]...), append(w.flags, args[1:]...)...)...)
}

func truncateLog(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}

// sumC is a program this project did not write: it reads numbers, one a
// line, from its first argument, writes their running sums to its second,
// prints a summary, and exits 3 so that the exit status is seen to come
// back.
const sumC = `#include <stdio.h>
#include <stdlib.h>
int main(int argc, char **argv) {
	if (argc != 3) { fprintf(stderr, "usage: sum IN OUT\n"); return 2; }
	FILE *in = fopen(argv[1], "r"), *out = fopen(argv[2], "w");
	if (!in || !out) { perror("open"); return 1; }
	long long v, sum = 0, n = 0;
	while (fscanf(in, "%lld", &v) == 1) { sum += v * v; n++; fprintf(out, "%lld %lld\n", n, sum); }
	fclose(out);
	printf("%lld numbers, sum of squares %lld\n", n, sum);
	fprintf(stderr, "sum: done\n");
	return 3;
}
`

// mapwC writes a file through a shared, writable mapping.
const mapwC = `#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>
int main(int argc, char **argv) {
	int fd = open(argv[1], O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) < 0) { perror("open"); return 1; }
	char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) { perror("mmap MAP_SHARED"); return 2; }
	strcpy(p, "written through a shared mapping\n");
	if (msync(p, 4096, MS_SYNC) < 0) { perror("msync"); return 3; }
	return 0;
}
`

// testUserPrograms runs, from a workstation and as a user would, programs
// this project did not write: a static C program uploaded with drift cp,
// a #!/bin/sh script and a Go program that starts children (both moved
// twice while they run), a Python program when the image has python3,
// and drift cp of a large file, also interrupted.
func testUserPrograms(ctx context.Context, t *testing.T, c *cluster) {
	l := c.l
	head, w1, w2 := c.names[0], c.names[1], c.names[2]
	ws := newWorkstation(t, l, c.img)
	work := t.TempDir()

	t.Run("drift run uname from a workstation finds the node's tools", func(t *testing.T) {
		res := ws.run(ctx, t, "", nil, "run", "--node", w1, "--", "uname", "-a")
		if res.ExitCode != 0 || !strings.Contains(string(res.Stdout), "Linux "+w1) {
			t.Errorf("drift run -- uname -a exited %d with %q (stderr %q), want 0 and %q", res.ExitCode, res.Stdout, res.Stderr, "Linux "+w1)
		}
	})

	t.Run("a static C program uploaded with drift cp runs from /cluster", func(t *testing.T) {
		src := filepath.Join(work, "sum.c")
		bin := filepath.Join(work, "sum")
		if err := os.WriteFile(src, []byte(sumC), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("gcc", "-static", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc -static: %v: %s", err, out)
		}
		in := filepath.Join(work, "numbers.txt")
		var nums strings.Builder
		for i := 1; i <= 5000; i++ {
			fmt.Fprintln(&nums, i*7%1000)
		}
		if err := os.WriteFile(in, []byte(nums.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		// What the program does on this machine is what it must do there.
		want := exec.Command(bin, in, filepath.Join(work, "want.txt"))
		wantOut, _ := want.Output()
		if want.ProcessState.ExitCode() != 3 {
			t.Fatalf("sum on the host exited %d", want.ProcessState.ExitCode())
		}

		ws.ok(ctx, t, work, "cp", "sum", "numbers.txt", ":sums/")
		res := ws.run(ctx, t, "", nil, "run", "--node", w1, "--", "/cluster/sums/sum", "/cluster/sums/numbers.txt", "/cluster/sums/out.txt")
		if res.ExitCode != 3 || string(res.Stdout) != string(wantOut) || !strings.Contains(string(res.Stderr), "sum: done") {
			t.Errorf("drift run of the uploaded program: exit %d, stdout %q, stderr %q; want exit 3, %q and sum: done on stderr",
				res.ExitCode, res.Stdout, res.Stderr, wantOut)
		}
		ws.ok(ctx, t, work, "cp", ":sums/out.txt", "got.txt")
		got, _ := os.ReadFile(filepath.Join(work, "got.txt"))
		wantFile, _ := os.ReadFile(filepath.Join(work, "want.txt"))
		if len(wantFile) == 0 || !bytes.Equal(got, wantFile) {
			t.Errorf("the result file downloaded with drift cp has %d bytes, want the %d the program writes on the host", len(got), len(wantFile))
		}
	})

	t.Run("a program maps a /cluster file shared and writable", func(t *testing.T) {
		src, bin := filepath.Join(work, "mapw.c"), filepath.Join(work, "mapw")
		os.WriteFile(src, []byte(mapwC), 0o644)
		if out, err := exec.Command("gcc", "-static", "-O2", "-o", bin, src).CombinedOutput(); err != nil {
			t.Fatalf("gcc -static: %v: %s", err, out)
		}
		ws.ok(ctx, t, work, "cp", "mapw", ":sums/")
		res := ws.run(ctx, t, "", nil, "run", "--node", w2, "--", "/cluster/sums/mapw", "/cluster/sums/mapped.dat")
		if res.ExitCode != 0 {
			t.Errorf("a shared writable mapping of a /cluster file: exit %d, %q %q", res.ExitCode, res.Stdout, res.Stderr)
		}
		ws.ok(ctx, t, work, "cp", ":sums/mapped.dat", "mapped.dat")
		if b, _ := os.ReadFile(filepath.Join(work, "mapped.dat")); !bytes.HasPrefix(b, []byte("written through a shared mapping\n")) {
			t.Errorf("the mapped file reads %q from the workstation", b[:min(len(b), 40)])
		}
	})

	t.Run("a #!/bin/sh script on /cluster migrates twice, output intact", func(t *testing.T) {
		const lines = 120
		script := "#!/bin/sh\n" +
			"i=1\n" +
			"while [ $i -le " + strconv.Itoa(lines) + " ]; do\n" +
			"  d=$(date +%s)\n" +
			"  echo \"$i $(expr $i \\* 3) ${d:+t}\"\n" +
			"  sleep 0.2\n" +
			"  i=$(expr $i + 1)\n" +
			"done\n"
		if err := os.WriteFile(filepath.Join(work, "loop.sh"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		ws.ok(ctx, t, work, "cp", "loop.sh", ":scripts/")
		res := runMovedTwice(ctx, t, l, ws, "shloop", w1, w2, head, nil, 3*time.Minute, "/cluster/scripts/loop.sh")
		var want strings.Builder
		for i := 1; i <= lines; i++ {
			fmt.Fprintf(&want, "%d %d t\n", i, 3*i)
		}
		sameOutput(t, "the script", res, want.String())
	})

	t.Run("a Go program that starts children migrates twice", func(t *testing.T) {
		const lines = 80
		dir := filepath.Join(work, "gospawn")
		os.MkdirAll(dir, 0o755)
		prog := `package main

import (
	"fmt"
	"os"
	"os/exec"
	"time"
)

func main() {
	for i := 1; i <= ` + strconv.Itoa(lines) + `; i++ {
		out, err := exec.Command("expr", fmt.Sprint(i), "*", "5").Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			fmt.Fprintf(os.Stderr, "child: %v: %s\n", err, stderr)
			os.Exit(1)
		}
		fmt.Printf("%d %s", i, out)
		time.Sleep(250 * time.Millisecond)
	}
}
`
		os.WriteFile(filepath.Join(dir, "main.go"), []byte(prog), 0o644)
		os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module gospawn\n\ngo 1.22\n"), 0o644)
		build := exec.Command("go", "build", "-o", "gospawn", ".")
		build.Dir, build.Env = dir, append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build: %v: %s", err, out)
		}
		ws.ok(ctx, t, dir, "cp", "gospawn", ":bin/")
		res := runMovedTwice(ctx, t, l, ws, "gospawn", w2, w1, head, func() {
			time.Sleep(2 * time.Second)
			t.Logf("drift why gospawn: %s", ws.ok(ctx, t, "", "why", "gospawn"))
		}, 3*time.Minute, "/cluster/bin/gospawn")
		var want strings.Builder
		for i := 1; i <= lines; i++ {
			fmt.Fprintf(&want, "%d %d\n", i, 5*i)
		}
		sameOutput(t, "the Go program", res, want.String())
	})

	t.Run("a Python program migrates twice and prints what it prints unmoved", func(t *testing.T) {
		if res, err := l.Exec(ctx, 2, "python3", "-c", "print(1)"); err != nil || res.ExitCode != 0 {
			t.Skip("the image has no python3 (make image PACKAGES=python3)")
		}
		// About a minute of CPU under TCG: a sieve, a hash chain and a
		// float series, each printed as it goes.
		prog := `import hashlib, sys
def primes(n):
    s = bytearray([1]) * (n + 1)
    s[0] = s[1] = 0
    for i in range(2, int(n ** 0.5) + 1):
        if s[i]:
            s[i * i::i] = bytearray(len(s[i * i::i]))
    return [i for i, v in enumerate(s) if v]
h = b"drift"
total = 0.0
for r in range(1, 61):
    p = primes(20000 + r * 1000)
    for _ in range(300):
        h = hashlib.sha256(h).digest()
    for k in range(1, 200001):
        total += 1.0 / (k * k + r)
    print(r, len(p), sum(p) % 1000003, h.hex()[:16], "%.12f" % total, flush=True)
print("done", file=sys.stderr)
`
		os.WriteFile(filepath.Join(work, "sim.py"), []byte(prog), 0o644)
		host := exec.Command("python3", filepath.Join(work, "sim.py"))
		want, err := host.Output()
		if err != nil {
			t.Fatalf("python3 sim.py on the host: %v", err)
		}
		ws.ok(ctx, t, work, "cp", "sim.py", ":py/")
		res := runMovedTwice(ctx, t, l, ws, "pysim", w1, w2, head, func() { time.Sleep(3 * time.Second) },
			5*time.Minute, "python3", "/cluster/py/sim.py")
		if !strings.Contains(string(res.Stderr), "done") {
			t.Errorf("drift run python3 sim.py: stderr %q, want done", res.Stderr)
		}
		sameOutput(t, "the Python program", res, string(want))
	})

	t.Run("drift cp of 50 MB up and back matches; an interrupted upload leaves no file", func(t *testing.T) {
		big := make([]byte, 50<<20)
		rand.Read(big)
		os.WriteFile(filepath.Join(work, "big.bin"), big, 0o644)
		ws.ok(ctx, t, work, "cp", "big.bin", ":data/")
		t.Cleanup(func() { // 50 MB or more of the head's memory, for the steps after
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			l.Exec(cctx, 2, "rm", "-rf", "/cluster/data")
		})
		ws.ok(ctx, t, work, "cp", ":data/big.bin", "back.bin")
		back, _ := os.ReadFile(filepath.Join(work, "back.bin"))
		if sha256.Sum256(back) != sha256.Sum256(big) {
			t.Errorf("50 MB up and back with drift cp: %d bytes back, checksums differ", len(back))
		}
		// Kill the client half way through an upload: of a file large
		// enough (sparse: 300 MB the head never holds whole) that the
		// upload is still under way when its part file shows on a node.
		f, err := os.Create(filepath.Join(work, "cut.bin"))
		if err != nil {
			t.Fatal(err)
		}
		f.Truncate(300 << 20)
		f.Close()
		cmd := l.Command(ctx, ws.drift, append([]string{"cp"}, append(ws.flags, "cut.bin", ":data/cut.bin")...)...)
		cmd.Dir = work
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		for seen := false; !seen; {
			select {
			case err := <-exited:
				t.Fatalf("drift cp of 300 MB ended (%v) before its part file showed: nothing to interrupt", err)
			case <-ctx.Done():
				t.Fatal(ctx.Err())
			default:
			}
			ls, _ := l.ExecOK(ctx, 2, "ls", "-a", "/cluster/data")
			seen = strings.Contains(ls, ".cut.bin.drift-part-")
		}
		cmd.Process.Kill()
		<-exited
		// The head removes the part file once the upload's stream
		// breaks; ls may catch it half way (listed, then gone before
		// ls looks at it), so look again until the directory is still.
		var ls string
		deadline := time.Now().Add(time.Minute)
		for {
			out, err := l.ExecOK(ctx, 2, "ls", "-a", "/cluster/data")
			if err == nil {
				ls = out
				if !strings.Contains(ls, ".cut.bin.drift-part-") {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("a minute after the upload was interrupted, /cluster/data still holds its part file or cannot be listed: %q, %v", out, err)
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("/cluster/data after the interrupted upload: %q", ls)
		if strings.Contains(ls, "cut.bin") {
			t.Errorf("an interrupted upload left a file behind in /cluster/data: %q", ls)
		}
	})
}

// runMovedTwice runs argv from the workstation as job name on node start
// and, once it runs (and before has returned, if given), migrates it to a
// and then to b, the first time by its name from the workstation; it
// checks drift ps after the moves and returns what drift run did, waiting
// at most limit.
func runMovedTwice(ctx context.Context, t *testing.T, l *lab.Lab, ws *workstation, name, start, a, b string,
	before func(), limit time.Duration, argv ...string) *labport.Result {
	t.Helper()
	run := ws.background(ctx, t, append([]string{"run", "--stay", "--node", start, "--name", name, "--"}, argv...)...)
	job := waitNamed(ctx, t, l, 1, name, lab.Running(start))
	if before != nil {
		before()
	}
	out := ws.ok(ctx, t, "", "migrate", name, a)
	t.Logf("move 1: %s", strings.TrimSpace(out))
	time.Sleep(time.Second)
	res, err := l.Migrate(ctx, 1, job.ID, b)
	if err != nil {
		t.Fatalf("move 2 of %s to %s: %v", job.ID, b, err)
	}
	t.Logf("move 2: %s → %s: freeze %s, total %s, %d bytes", res.From, res.To, res.Freeze.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.Bytes)
	got, err := l.Job(ctx, 1, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != b || got.Moves != 2 {
		t.Errorf("after two moves drift ps shows %s on %s with %d moves, want %s with 2", got.ID, got.Node, got.Moves, b)
	}
	return run.wait(ctx, t, limit)
}

// sameOutput checks that a migrated program exited 0 and printed want,
// what it prints unmoved.
func sameOutput(t *testing.T, what string, res *labport.Result, want string) {
	t.Helper()
	if res.ExitCode != 0 {
		t.Errorf("drift run of %s exited %d, want 0 (stderr %q)", what, res.ExitCode, res.Stderr)
	}
	if diff := lineDiff(want, string(res.Stdout)); diff != "" {
		t.Errorf("the migrated output of %s differs from what it prints unmoved: %s", what, diff)
	}
}

// lineDiff says where got's lines first differ from want's, or "".
func lineDiff(want, got string) string {
	wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(wl), len(gl)); i++ {
		var w, g string
		if i < len(wl) {
			w = wl[i]
		}
		if i < len(gl) {
			g = gl[i]
		}
		if w != g {
			return fmt.Sprintf("line %d is %q, want %q (%d lines, want %d)", i+1, g, w, len(gl), len(wl))
		}
	}
	return ""
}
