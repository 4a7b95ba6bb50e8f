package floor

import (
	"bytes"
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

// TestWriteCPIO checks the archive against the system's cpio tool, when
// there is one, and the newc layout rules otherwise.
func TestWriteCPIO(t *testing.T) {
	var buf bytes.Buffer
	err := WriteCPIO(&buf, []CPIOEntry{
		{Name: "dev", Mode: fs.ModeDir | 0o755},
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "/init", Mode: 0o755, Data: []byte("#!/bin/sh\necho hi\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	if len(b)%4 != 0 || !bytes.HasPrefix(b, []byte("070701")) || !bytes.Contains(b, []byte("TRAILER!!!")) {
		t.Fatalf("archive: len %d, prefix %q; want a multiple of 4 starting 070701 with a trailer", len(b), b[:6])
	}
	if _, err := exec.LookPath("cpio"); err != nil {
		t.Skip("no cpio tool to list the archive")
	}
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v", err)
	}
	got := string(out)
	for _, want := range []string{"drwxr-xr-x", " dev\n", "crw-------", "5,   1", "dev/console", "-rwxr-xr-x", "18 ", " init\n"} {
		if !strings.Contains(got, want) {
			t.Errorf("cpio -itv output lacks %q:\n%s", want, got)
		}
	}
}
