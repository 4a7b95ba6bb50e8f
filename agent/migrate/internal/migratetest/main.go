//go:build linux

// Command migratetest drives agent/migrate end to end between two drift
// VMs, for the VM tier's TestCluster (qemu-tests): "source" starts a job in
// its own PID namespace and migrates it to "target", which restores it
// with a fresh stdout pipe and relays its output back. Plain TCP with gob frames stands
// in for the agents' mutual-TLS channel.
package main

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/migrate"
)

// msg is one frame on the test channel.
type msg struct {
	Kind  string // "img", "chunk", "end", "restore", "ok", "err", "out", "exit"
	Name  string
	Data  []byte
	Inode uint64
	Pid   int
	Code  int
	Err   string
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: migratetest source|target [flags]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx := context.Background()
	var err error
	switch os.Args[1] {
	case "source":
		err = source(ctx, log, os.Args[2:])
	case "target":
		err = target(ctx, log, os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "migratetest:", err)
		os.Exit(1)
	}
}

// Result is what source prints on its last stderr line, as JSON.
type Result struct {
	Migrated bool
	Err      string
	Reasons  []migrate.Reason
	Stats    migrate.Stats
	THP      string
}

// conn is one gob channel.
type conn struct {
	c   net.Conn
	enc *gob.Encoder
	dec *gob.Decoder
	mu  sync.Mutex
}

func newConn(c net.Conn) *conn { return &conn{c: c, enc: gob.NewEncoder(c), dec: gob.NewDecoder(c)} }

func (c *conn) send(m msg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(m)
}

// sender implements migrate.Sender over the channel: img, chunks, end,
// then waits for ok.
type sender struct {
	c   *conn
	ack chan msg
}

func (s *sender) Send(ctx context.Context, name string, r io.Reader) (int64, error) {
	if err := s.c.send(msg{Kind: "img", Name: name}); err != nil {
		return 0, err
	}
	var n int64
	buf := make([]byte, 256<<10)
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if err := s.c.send(msg{Kind: "chunk", Data: buf[:k]}); err != nil {
				return n, err
			}
			n += int64(k)
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return n, err
		}
	}
	if err := s.c.send(msg{Kind: "end"}); err != nil {
		return n, err
	}
	select {
	case m, ok := <-s.ack:
		if !ok {
			return n, errors.New("target closed the connection")
		}
		if m.Kind != "ok" {
			return n, fmt.Errorf("target: %s", m.Err)
		}
		return n, nil
	case <-ctx.Done():
		return n, ctx.Err()
	}
}

// dest is the thin migrate.Dest of the test channel: the target takes
// every job, and restores it when asked.
type dest struct {
	sender
	ino uint64 // the job's stdout pipe on the source
}

func (d *dest) Admit(ctx context.Context, cpuinfo []byte) (int, error) { return 1, nil }

func (d *dest) Restore(ctx context.Context) error {
	return d.ask(ctx, msg{Kind: "restore", Inode: d.ino})
}

func (d *dest) Discard(ctx context.Context) error { return nil } // the target's images go with its VM

func (d *dest) Commit(ctx context.Context) error { return nil } // the test target runs the job as it restores it

func (d *dest) Started(ctx context.Context) (bool, error) { return true, nil } // Commit always answers

// ask sends m and waits for the target's answer.
func (d *dest) ask(ctx context.Context, m msg) error {
	if err := d.c.send(m); err != nil {
		return err
	}
	select {
	case a, ok := <-d.ack:
		if !ok {
			return errors.New("target closed the connection")
		}
		if a.Kind != "ok" {
			return errors.New(a.Err)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// output collects the job's stdout; pause/resume let frozen() drain the
// pipe synchronously.
type output struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (o *output) add(b []byte) { o.mu.Lock(); o.buf.Write(b); o.mu.Unlock() }
func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

func source(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("source", flag.ExitOnError)
	addr := fs.String("target", "", "target host:port")
	after := fs.Duration("after", 3*time.Second, "migrate after this long")
	openTmp := fs.Bool("open-tmp", false, "give the job a file under /tmp (fd 3)")
	noTHP := fs.Bool("no-thp", false, "disable transparent huge pages for the job")
	thpMode := fs.String("thp", "", "set the node's transparent_hugepage/enabled first (always, madvise, never)")
	wait := fs.Bool("wait", true, "wait for the job to end and print its output")
	fs.Parse(args)
	job := fs.Args()
	if *thpMode != "" {
		if err := os.WriteFile("/sys/kernel/mm/transparent_hugepage/enabled", []byte(*thpMode), 0); err != nil {
			return err
		}
	}
	if *noTHP {
		if err := unix.Prctl(unix.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl: %w", err)
		}
	}
	thp, _ := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	res := Result{THP: strings.TrimSpace(string(thp))}
	if *noTHP {
		res.THP += " (PR_SET_THP_DISABLE)"
	}

	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(pw.Fd()), &st); err != nil {
		return err
	}
	cmd := exec.Command(job[0], job[1:]...)
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	if *openTmp {
		f, err := os.Create("/tmp/migratetest.log")
		if err != nil {
			return err
		}
		cmd.ExtraFiles = []*os.File{f}
		defer f.Close()
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	pw.Close()
	jobDone := make(chan error, 1)
	go func() { jobDone <- cmd.Wait() }()

	// The reader stops at a read deadline (frozen) and waits for resume.
	out := &output{}
	paused := make(chan struct{})
	resume := make(chan bool)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		buf := make([]byte, 4096)
		for {
			n, err := pr.Read(buf)
			out.add(buf[:n])
			if errors.Is(err, os.ErrDeadlineExceeded) {
				paused <- struct{}{}
				if !<-resume {
					return
				}
				continue
			}
			if err != nil {
				return
			}
		}
	}()
	didFreeze := false
	frozen := func() {
		didFreeze = true
		pr.SetReadDeadline(time.Now())
		<-paused
		// The job is frozen: read what it wrote before, until the pipe is empty.
		for {
			n, err := unix.IoctlGetInt(int(pr.Fd()), unix.TIOCINQ)
			if err != nil || n == 0 {
				return
			}
			buf := make([]byte, n)
			k, _ := unix.Read(int(pr.Fd()), buf)
			if k > 0 {
				out.add(buf[:k])
			}
		}
	}
	time.Sleep(*after)

	var c *conn
	for i := 0; ; i++ {
		nc, err := net.Dial("tcp", *addr)
		if err == nil {
			c = newConn(nc)
			break
		}
		if i == 50 {
			return fmt.Errorf("dial target: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer c.c.Close()
	acks := make(chan msg, 1)
	remoteOut := make(chan msg, 64)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		defer close(acks)
		defer close(remoteOut)
		for {
			var m msg
			if err := c.dec.Decode(&m); err != nil {
				return
			}
			switch m.Kind {
			case "out", "exit":
				remoteOut <- m
			default:
				acks <- m
			}
		}
	}()
	mj := migrate.Job{Pid: cmd.Process.Pid, Stdio: [3]uint64{1: st.Ino, 2: st.Ino}}
	if reasons, err := migrate.Check(mj.Pid, api.SharedRoot, mj.Stdio[:]); err == nil {
		res.Reasons = reasons
	}
	node := &migrate.Node{WorkDir: "/tmp", Logger: log}
	moved, err := node.Move(ctx, mj, &dest{sender: sender{c: c, ack: acks}, ino: st.Ino}, frozen)
	res.Stats = moved.Stats
	code := 0
	if err != nil {
		res.Err = err.Error()
		log.Error("migrate", "err", err)
		if pr.SetReadDeadline(time.Time{}); didFreeze {
			resume <- true
		}
		<-jobDone // the job runs on here
		<-readerDone
	} else {
		res.Migrated = true
		<-jobDone // killed here
		resume <- false
		<-readerDone
		for m := range remoteOut {
			if m.Kind == "exit" {
				code = m.Code
				break
			}
			out.add(m.Data)
		}
	}
	if *wait {
		fmt.Print(out.String())
	}
	b, _ := json.Marshal(res)
	fmt.Fprintf(os.Stderr, "RESULT %s\n", b)
	if code != 0 {
		return fmt.Errorf("job exited %d on the target", code)
	}
	return nil
}

func target(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("target", flag.ExitOnError)
	listen := fs.String("listen", ":7070", "address")
	dieAt := fs.String("die-at", "", "exit abruptly when this image starts arriving (test of a target that dies)")
	killAfter := fs.Duration("kill-after", 0, "kill the restored job after this long (0: let it end)")
	fs.Parse(args)
	// As a drift node does: CRIU premaps Go's PROT_NONE reservations
	// writable while restoring.
	if err := os.WriteFile("/proc/sys/vm/overcommit_memory", []byte("1"), 0); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	nc, err := ln.Accept()
	ln.Close()
	if err != nil {
		return err
	}
	c := newConn(nc)
	defer nc.Close()
	t := &migrate.Target{WorkDir: "/tmp/recv", Logger: log}
	const id = "job1"
	defer t.Discard(id)
	for {
		var m msg
		if err := c.dec.Decode(&m); err != nil {
			return fmt.Errorf("source went away: %w", err)
		}
		switch m.Kind {
		case "img":
			if m.Name == *dieAt {
				log.Info("dying as asked", "at", m.Name)
				os.Exit(3)
			}
			pr, pw := io.Pipe()
			done := make(chan error, 1)
			go func() {
				err := t.Receive(ctx, id, m.Name, pr)
				pr.CloseWithError(err)
				done <- err
			}()
			for {
				var d msg
				if err := c.dec.Decode(&d); err != nil {
					pw.CloseWithError(err)
					<-done
					return err
				}
				if d.Kind == "end" {
					break
				}
				pw.Write(d.Data)
			}
			pw.Close()
			if err := <-done; err != nil {
				c.send(msg{Kind: "err", Err: err.Error()})
				continue
			}
			c.send(msg{Kind: "ok"})
		case "restore":
			return restore(ctx, log, t, c, id, m.Inode, *killAfter)
		}
	}
}

func restore(ctx context.Context, log *slog.Logger, t *migrate.Target, c *conn, id string, ino uint64, killAfter time.Duration) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	pid, err := t.Restore(ctx, id, []migrate.InheritFd{{Key: fmt.Sprintf("pipe:[%d]", ino), File: pw}}, nil)
	pw.Close()
	if err != nil {
		c.send(msg{Kind: "err", Err: err.Error()})
		return err
	}
	c.send(msg{Kind: "ok", Pid: pid})
	if killAfter > 0 {
		time.AfterFunc(killAfter, func() { syscall.Kill(pid, syscall.SIGKILL) })
	}
	buf := make([]byte, 4096)
	for {
		n, err := pr.Read(buf)
		if n > 0 {
			c.send(msg{Kind: "out", Data: append([]byte(nil), buf[:n]...)})
		}
		if err != nil {
			break
		}
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	ps, err := p.Wait()
	code := -1
	if err == nil {
		code = ps.ExitCode()
		log.Info("job ended", "status", ps.String())
	} else {
		log.Error("wait job", "err", err)
	}
	if killAfter > 0 {
		code = 0
	}
	return c.send(msg{Kind: "exit", Code: code})
}
