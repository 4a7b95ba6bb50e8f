package labcli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/driftcluster/drift/agent/labport"
)

// TestWithoutLab runs subcommands against a state directory with no lab in
// it: each must say so and how to start one, and down must succeed.
func TestWithoutLab(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "node2.console.log"), []byte("old boot\r\n"), 0o644)
	tests := []struct {
		name    string
		args    []string
		wantErr string // "" for success
		wantOut string
	}{
		{"status", []string{"status", "--state", dir}, "no lab is running in " + dir + ": start one with drift-lab up", ""},
		{"exec", []string{"exec", "--state", dir, "1", "--", "hostname"}, "no lab is running", ""},
		{"exec without command", []string{"exec", "--state", dir, "1"}, "want NODE -- CMD", ""},
		{"console", []string{"console", "--state", dir, "1"}, "no lab is running", ""},
		{"logs kept after down", []string{"logs", "--state", dir, "2"}, "", "old boot\r\n"},
		{"logs of a name after down", []string{"logs", "--state", dir, "drift-d1ab02"}, "no lab is running", ""},
		{"down is idempotent", []string{"down", "--state", dir}, "", "no lab is running in " + dir + "\n"},
		{"unknown", []string{"frobnicate"}, `unknown subcommand "frobnicate"`, ""},
		{"up without image", []string{"up", "--state", dir, "--image", filepath.Join(dir, "none")}, "make image", ""},
		{"up bad boot", []string{"up", "--state", dir, "--boot", "floppy"}, "unknown boot mode", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			err := Run(context.Background(), tt.args, strings.NewReader(""), &out, &errOut)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Run(%q) = %v, want success", tt.args, err)
				}
			} else if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run(%q) = %v, want an error containing %q", tt.args, err, tt.wantErr)
			}
			if out.String() != tt.wantOut {
				t.Errorf("Run(%q) printed %q, want %q", tt.args, out.String(), tt.wantOut)
			}
		})
	}
}

func TestSplitDashes(t *testing.T) {
	tests := []struct {
		args          []string
		before, after string
	}{
		{[]string{"2", "--", "ls", "-l"}, "2", "ls -l"},
		{[]string{"2", "ls"}, "2 ls", ""},
		{[]string{"--", "x"}, "", "x"},
	}
	for _, tt := range tests {
		b, a := splitDashes(tt.args)
		if strings.Join(b, " ") != tt.before || strings.Join(a, " ") != tt.after {
			t.Errorf("splitDashes(%q) = %q, %q; want %q, %q", tt.args, b, a, tt.before, tt.after)
		}
	}
}

func TestCopyUntilEscape(t *testing.T) {
	var out strings.Builder
	if err := copyUntilEscape(context.Background(), &out, strings.NewReader("ls\r\x1dnot sent")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "ls\r" {
		t.Errorf("copyUntilEscape sent %q, want %q", out.String(), "ls\r")
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		st   labport.ExitStatus
		want int
	}{
		{labport.ExitStatus{}, 0},
		{labport.ExitStatus{Code: 3}, 3},
		{labport.ExitStatus{Code: -1, Signal: syscall.SIGKILL}, 137},
		{labport.ExitStatus{Code: -1, Signal: syscall.SIGINT}, 130},
	}
	for _, tt := range tests {
		if got := exitCode(tt.st); got != tt.want {
			t.Errorf("exitCode(%v) = %d, want %d", tt.st, got, tt.want)
		}
	}
	if backgroundTerminal(strings.NewReader("")) {
		t.Errorf("backgroundTerminal(a strings.Reader) = true, want false")
	}
}
