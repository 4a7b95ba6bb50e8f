// Package floor builds the smallest initramfs that proves a kernel reached
// user space: a static Go /init that prints one console line and powers the
// machine off. The boot benchmark uses it as the floor that drift's own boot
// time is compared against, and the lab uses it for its short KVM probe boot.
package floor

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
)

// Line is what the floor init prints on the console once it runs.
const Line = "floor: init reached"

// initSource is the whole floor init: print Line on the console, flush, and
// power off so that QEMU exits by itself.
const initSource = `package main

import (
	"os"
	"syscall"
)

func main() {
	out := os.Stdout
	if c, err := os.OpenFile("/dev/console", os.O_WRONLY, 0); err == nil {
		out = c
	}
	out.WriteString("\n` + Line + `\n")
	syscall.Sync()
	syscall.Reboot(syscall.LINUX_REBOOT_CMD_POWER_OFF)
	select {}
}
`

// BuildInit compiles the floor init as a static linux/amd64 binary and
// returns its bytes. It needs the go tool on PATH; workDir is used for the
// temporary module and must exist.
func BuildInit(ctx context.Context, workDir string) ([]byte, error) {
	dir, err := os.MkdirTemp(workDir, "floorinit")
	if err != nil {
		return nil, fmt.Errorf("build floor init: %w", err)
	}
	defer os.RemoveAll(dir)
	files := map[string]string{
		"go.mod":  "module floorinit\n\ngo 1.21\n",
		"main.go": initSource,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("build floor init: %w", err)
		}
	}
	out := filepath.Join(dir, "init")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64", "GOFLAGS=", "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build floor init: go build: %w\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build floor init: %w", err)
	}
	return b, nil
}

// Archive returns an uncompressed newc initramfs holding init as /init and
// a /dev/console node.
func Archive(init []byte) ([]byte, error) {
	var buf bytes.Buffer
	err := WriteCPIO(&buf, []CPIOEntry{
		{Name: "dev", Mode: fs.ModeDir | 0o755},
		{Name: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Name: "init", Mode: 0o755, Data: init},
	})
	if err != nil {
		return nil, fmt.Errorf("floor initramfs: %w", err)
	}
	return buf.Bytes(), nil
}

// WriteInitramfs builds the floor init and writes its initramfs to path.
func WriteInitramfs(ctx context.Context, path string) error {
	init, err := BuildInit(ctx, filepath.Dir(path))
	if err != nil {
		return err
	}
	a, err := Archive(init)
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, a, 0o644); err != nil {
		return fmt.Errorf("write floor initramfs: %w", err)
	}
	return nil
}
