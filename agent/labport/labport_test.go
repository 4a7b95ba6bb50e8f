package labport

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serveUnix stands in for QEMU's chardev socket: it accepts host
// connections on a unix socket and serves each with a real Server.
func serveUnix(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "lab.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			(&Server{}).Serve(ctx, c, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { cancel(); ln.Close(); <-done })
	return sock
}

func TestExec(t *testing.T) {
	sock := serveUnix(t)
	tests := []struct {
		name       string
		req        Request
		wantOut    string
		wantErrOut string
		wantCode   int
	}{
		{"stdout", Request{Argv: []string{"echo", "hello", "lab"}}, "hello lab\n", "", 0},
		{"exit code", Request{Argv: []string{"sh", "-c", "echo oops >&2; exit 7"}}, "", "oops\n", 7},
		{"stdin", Request{Argv: []string{"cat"}, Stdin: []byte("in\x00bin")}, "in\x00bin", "", 0},
		{"env", Request{Argv: []string{"sh", "-c", "echo $LABVAR"}, Env: []string{"LABVAR=x1"}}, "x1\n", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			res, err := Exec(ctx, sock, tt.req)
			if err != nil {
				t.Fatalf("Exec(%q) error: %v", tt.req.Argv, err)
			}
			if string(res.Stdout) != tt.wantOut || string(res.Stderr) != tt.wantErrOut || res.ExitCode != tt.wantCode {
				t.Errorf("Exec(%q) = (%q, %q, %d), want (%q, %q, %d)", tt.req.Argv,
					res.Stdout, res.Stderr, res.ExitCode, tt.wantOut, tt.wantErrOut, tt.wantCode)
			}
		})
	}
}

func TestExecErrors(t *testing.T) {
	sock := serveUnix(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := Exec(ctx, sock, Request{Argv: []string{"/no/such/program"}}); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Exec(missing program) error = %v, want one naming the missing file", err)
	}
	if _, err := Exec(ctx, sock, Request{}); err == nil || !strings.Contains(err.Error(), "empty command") {
		t.Errorf("Exec(empty) error = %v, want empty command", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel2()
	res, err := Exec(short, sock, Request{Argv: []string{"sleep", "30"}})
	if err == nil && res.ExitCode == 0 {
		t.Errorf("Exec(sleep 30) with 300ms deadline = %+v, want an error or a killed command", res)
	}
	if _, err := Exec(ctx, filepath.Join(t.TempDir(), "none.sock"), Request{Argv: []string{"true"}}); err == nil || !strings.Contains(err.Error(), "is the VM running") {
		t.Errorf("Exec(no socket) error = %v, want a hint that the VM is not running", err)
	}
}

func TestServeDropsGarbage(t *testing.T) {
	in := strings.NewReader("not json\n{\"argv\":[\"true\"]}\n\n{\"id\":\"a\",\"argv\":[\"echo\",\"ok\"]}\n")
	var out strings.Builder
	if err := (&Server{}).Serve(context.Background(), in, &out); err != nil {
		t.Fatalf("Serve: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], `"id":"a"`) {
		t.Errorf("Serve answered %q, want exactly one answer, to id a", lines)
	}
}

func TestCapped(t *testing.T) {
	c := &capped{max: 4}
	c.Write([]byte("abc"))
	c.Write([]byte("def"))
	if got := c.buf.String(); got != "abcd" || !c.over {
		t.Errorf("capped = %q over=%v, want %q over=true", got, c.over, "abcd")
	}
}

func TestFindPort(t *testing.T) {
	sys := t.TempDir()
	for port, name := range map[string]string{"vport0p0": "other", "vport1p1": PortName} {
		d := filepath.Join(sys, "class", "virtio-ports", port)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644)
	}
	got, err := FindPort(sys, "/dev", PortName)
	if err != nil || got != "/dev/vport1p1" {
		t.Errorf("FindPort = %q, %v, want /dev/vport1p1", got, err)
	}
	if _, err := FindPort(t.TempDir(), "/dev", PortName); err != ErrNotFound {
		t.Errorf("FindPort(empty sysfs) error = %v, want ErrNotFound", err)
	}
}
