package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

func TestMain(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string
		wantErr  string
	}{
		{"help", nil, 0, "usage: drift COMMAND", ""},
		{"version", []string{"version"}, 0, "drift dev", ""},
		{"unknown", []string{"frobnicate"}, 2, "", `unknown command "frobnicate"`},
		{"bad flag", []string{"version", "--bogus"}, 1, "", "flag provided but not defined"},
		{"wait for a job", []string{"wait", "d1dd01-1"}, 2, "", "d1dd01-1 is a job, not an array: drift attach d1dd01-1 waits for it"},
		{"wait for neither", []string{"wait", "bogus"}, 2, "", `"bogus" is not an array id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut strings.Builder
			code := Main(context.Background(), tt.args, strings.NewReader(""), &out, &errOut)
			if code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) || !strings.Contains(errOut.String(), tt.wantErr) {
				t.Errorf("Main(%q) = %d, stdout %q, stderr %q; want %d, stdout containing %q, stderr containing %q",
					tt.args, code, out.String(), errOut.String(), tt.wantCode, tt.wantOut, tt.wantErr)
			}
		})
	}
}

func TestVersionJSON(t *testing.T) {
	var out strings.Builder
	if code := Main(context.Background(), []string{"version", "--json"}, nil, &out, &out); code != 0 {
		t.Fatalf("drift version --json exited %d: %s", code, out.String())
	}
	var v versionInfo
	if err := json.Unmarshal([]byte(out.String()), &v); err != nil || v.Version == "" || v.Kernel == "" {
		t.Errorf("drift version --json = %q (%v), want version and kernel", out.String(), err)
	}
}
