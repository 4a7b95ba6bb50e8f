package lab

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/driftcluster/drift/qemu-tests/floor"
)

// AccelEnv overrides the accelerator choice: tcg or kvm.
const AccelEnv = "DRIFT_LAB_ACCEL"

// accelCacheName is the file in a cache directory that remembers the probe.
const accelCacheName = "accel-probe"

// probeTimeout bounds the KVM probe boot. Under working KVM the floor
// initramfs prints its line in about a second.
const probeTimeout = 15 * time.Second

// ProbeConfig says how to choose the accelerator.
type ProbeConfig struct {
	CacheDir string       // where the probe result and its initramfs are kept; required
	Kernel   string       // kernel to boot for the probe; required when /dev/kvm exists
	QEMU     string       // "": qemu-system-x86_64 from PATH
	Logger   *slog.Logger // nil: slog.Default()
}

// ResolveAccel picks QEMU's accelerator: $DRIFT_LAB_ACCEL if set; TCG
// without /dev/kvm; otherwise the result of a short probe boot under KVM
// (the floor initramfs must print its line within 15 s), cached in CacheDir.
// KVM is known to hang guests on some hosts, which is why it is probed and
// not assumed.
func ResolveAccel(ctx context.Context, pc ProbeConfig) (Accel, error) {
	log := pc.Logger
	if log == nil {
		log = slog.Default()
	}
	if v := os.Getenv(AccelEnv); v != "" {
		switch Accel(v) {
		case AccelTCG, AccelKVM:
			return Accel(v), nil
		}
		return "", fmt.Errorf("%s=%q: want tcg or kvm", AccelEnv, v)
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return AccelTCG, nil
	}
	cache := filepath.Join(pc.CacheDir, accelCacheName)
	if b, err := os.ReadFile(cache); err == nil {
		switch a := Accel(strings.TrimSpace(string(b))); a {
		case AccelTCG, AccelKVM:
			return a, nil
		}
	}
	ok, err := probeKVM(ctx, pc)
	if err != nil {
		if ctx.Err() != nil {
			return "", err
		}
		log.Warn("kvm probe could not run; using tcg", "err", err)
		return AccelTCG, nil
	}
	a := AccelTCG
	if ok {
		a = AccelKVM
	}
	log.Info("kvm probe", "kvm_works", ok, "accel", a, "cache", cache)
	if err := os.WriteFile(cache, []byte(string(a)+"\n"), 0o644); err != nil {
		return "", fmt.Errorf("cache accel probe: %w", err)
	}
	return a, nil
}

// probeKVM boots the floor initramfs under KVM and reports whether its line
// appeared in time.
func probeKVM(ctx context.Context, pc ProbeConfig) (bool, error) {
	qemu, err := lookQEMU(pc.QEMU)
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(pc.CacheDir, 0o755); err != nil {
		return false, fmt.Errorf("kvm probe: %w", err)
	}
	initrd := filepath.Join(pc.CacheDir, "floor.cpio")
	if _, err := os.Stat(initrd); err != nil {
		if err := floor.WriteInitramfs(ctx, initrd); err != nil {
			return false, fmt.Errorf("kvm probe: %w", err)
		}
	}
	logPath := filepath.Join(pc.CacheDir, "kvm-probe.console.log")
	os.Remove(logPath)
	args := []string{
		"-nodefaults", "-accel", "kvm", "-smp", "1", "-m", "256",
		"-display", "none", "-vga", "none", "-monitor", "none", "-no-reboot", "-nic", "none",
		"-chardev", "file,id=con,path=" + logPath, "-serial", "chardev:con",
		"-kernel", pc.Kernel, "-initrd", initrd, "-append", "console=ttyS0 quiet panic=-1",
	}
	cmd := exec.Command(qemu, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return false, fmt.Errorf("kvm probe: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	defer func() {
		cmd.Process.Kill()
		<-exited
	}()
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	alive := func() bool {
		select {
		case <-exited:
			return false
		default:
			return true
		}
	}
	_, _, err = waitLine(pctx, logPath, 0, regexp.MustCompile(regexp.QuoteMeta(floor.Line)), alive)
	if err != nil {
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		return false, nil
	}
	return true, nil
}
