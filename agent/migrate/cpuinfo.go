//go:build linux

package migrate

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// CPUInfoDump returns CRIU's description of this node's CPU
// (cpuinfo.img from `criu cpuinfo dump`), for CPUInfoCheck on a target.
// criuPath "": "criu" from PATH.
func CPUInfoDump(ctx context.Context, criuPath string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "cpuinfo-")
	if err != nil {
		return nil, fmt.Errorf("cpuinfo dump: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := runCPUInfo(ctx, criuPath, "dump", dir); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "cpuinfo.img"))
	if err != nil {
		return nil, fmt.Errorf("cpuinfo dump: %w", err)
	}
	return b, nil
}

// CPUInfoCheck says whether a job dumped on the CPU that img describes
// (from CPUInfoDump) can run on this node's CPU; the error names what is
// missing when CRIU says so.
func CPUInfoCheck(ctx context.Context, criuPath string, img []byte) error {
	dir, err := os.MkdirTemp("", "cpuinfo-")
	if err != nil {
		return fmt.Errorf("cpuinfo check: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "cpuinfo.img"), img, 0o600); err != nil {
		return fmt.Errorf("cpuinfo check: %w", err)
	}
	return runCPUInfo(ctx, criuPath, "check", dir)
}

func runCPUInfo(ctx context.Context, criuPath, action, dir string) error {
	if criuPath == "" {
		criuPath = "criu"
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, criuPath, "cpuinfo", action, "-D", dir, "-v2", "-o", "cpuinfo.log")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		log := readTail(filepath.Join(dir, "cpuinfo.log")) + out.String()
		return &CRIUError{Op: "cpuinfo " + action, Reason: Explain(log), Log: log, Err: err}
	}
	return nil
}
