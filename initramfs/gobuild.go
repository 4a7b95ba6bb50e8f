package initramfs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// VersionVar is the variable that carries the drift version, set with
// -ldflags -X.
const VersionVar = "github.com/driftcluster/drift/agent/version.Version"

// GoBuild builds the main package pkg of the Go module in dir into the
// static binary out, stripped, with version stamped into VersionVar. It
// uses the Go build cache, so a second build of unchanged code is quick.
func GoBuild(ctx context.Context, dir, pkg, out, version string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", fmt.Sprintf("-s -w -X %s=%s", VersionVar, version),
		"-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
