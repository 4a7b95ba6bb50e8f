// Package initramfs assembles drift's initramfs with mkuimage's Go API:
// u-root's core commands built into one busybox, driftd as /init (or
// started by u-root's init as uinit), the drift CLI, and the files and links drift-image hands over
// (criu with its libraries, Debian's busybox as /bin/sh, kernel modules,
// the cluster key, the squashfs of Debian packages), compressed the way
// the kernel can unpack.
package initramfs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/u-root/gobusybox/src/pkg/golang"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// Commands are the u-root commands in drift's busybox: init, a shell, and
// what a person at a node's console needs to look around and repair.
var Commands = []string{
	"init", "gosh",
	"ls", "cat", "cp", "mv", "rm", "mkdir", "ln", "touch", "find", "grep", "more", "head", "tail", "wc", "tee", "echo", "sleep", "dd", "sync",
	"mount", "umount", "df", "du", "free", "ps", "kill", "pidof", "uname", "hostname", "dmesg", "uptime", "date",
	"ip", "ping", "wget", "netcat", "netstat", "dhclient",
	"insmod", "rmmod", "lsmod", "shutdown", "poweroff", "chroot", "switch_root", "strace",
	"tar", "gzip", "cpio", "md5sum", "shasum", "hexdump", "strings", "readlink", "realpath", "which", "id",
}

const uroot = "github.com/u-root/u-root/cmds/core/"

// File is a host file to put in the archive as it is (no library lookup:
// list what an ELF program loads yourself).
type File struct {
	Src string // path on the host
	Dst string // path in the archive, relative, e.g. "usr/sbin/criu"
}

// Data is a file whose contents are generated.
type Data struct {
	Path string // in the archive, relative, e.g. "etc/drift/version"
	Body []byte
	Mode os.FileMode
}

// Config says what goes into the initramfs.
type Config struct {
	Output   string   // path of the compressed archive to write
	Compress Compress // zero value: Gzip
	TempDir  string   // scratch space; "": os.TempDir()
	CacheDir string   // keeps the built busybox between builds; "": build it every time
	GoDir    string   // directory of the Go module holding u-root in go.mod; "": the current directory
	Commands []string // u-root core command names (or import paths) for the busybox; nil: Commands
	Uinit    string   // program u-root's init starts, e.g. "/bin/driftd"; "": none
	Init     string   // program the kernel runs as /init in place of u-root's init, e.g. "/bin/driftd"; "": u-root's init
	Files    []File
	Data     []Data
	// Symlinks are links to add, path in the archive (relative, e.g.
	// "bin/sh") to absolute target ("/bin/busybox"); each is written
	// relative to its directory. They replace what the busybox archive
	// has at the same path (u-root's bin/sh).
	Symlinks map[string]string
	Logger   *slog.Logger // nil: slog.Default()
}

// Build writes the initramfs described by cfg. It reports whether the
// busybox came from cfg.CacheDir.
func Build(ctx context.Context, cfg Config) (cached bool, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tmp, err := os.MkdirTemp(cfg.TempDir, "initramfs-")
	if err != nil {
		return false, fmt.Errorf("initramfs: %w", err)
	}
	defer os.RemoveAll(tmp)
	base, cached, err := busybox(ctx, cfg, tmp)
	if err != nil {
		return false, err
	}
	cpioPath := filepath.Join(tmp, "initramfs.cpio")
	mods := []uimage.Modifier{
		uimage.WithBaseFile(base),
		// With cfg.Init the busybox's /init (u-root's) becomes /inito,
		// which nothing runs.
		uimage.WithExistingInit(cfg.Init == ""),
		uimage.WithSkipLDD(),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(cpioPath),
	}
	if cfg.Uinit != "" {
		mods = append(mods, uimage.WithUinit(cfg.Uinit))
	}
	if cfg.Init != "" {
		mods = append(mods, uimage.WithSymlink("init", cfg.Init))
	}
	for _, f := range cfg.Files {
		if strings.Contains(f.Src, ":") {
			return false, fmt.Errorf("initramfs: %s: mkuimage cannot take a file whose path holds ':'; stage it under another name", f.Src)
		}
		mods = append(mods, uimage.WithFiles(f.Src+":"+f.Dst))
	}
	for _, p := range slices.Sorted(maps.Keys(cfg.Symlinks)) {
		mods = append(mods, uimage.WithSymlink(p, cfg.Symlinks[p]))
	}
	for i, d := range cfg.Data {
		p := filepath.Join(tmp, fmt.Sprintf("data-%d", i))
		if err := os.WriteFile(p, d.Body, d.Mode.Perm()); err != nil {
			return false, fmt.Errorf("initramfs: %w", err)
		}
		mods = append(mods, uimage.WithFiles(p+":"+d.Path))
	}
	if err := create(ctx, cfg.Logger, mods...); err != nil {
		return false, err
	}
	return cached, compressFile(cpioPath, cfg.Output, cfg.Compress)
}

// busybox returns a cpio archive holding u-root's base layout, the busybox
// of cfg.Commands, /init and the shell. Building the busybox takes a while
// (gobusybox loads and rewrites every command's source), so it is kept in
// cfg.CacheDir under a name that changes with the commands, go.mod, go.sum
// and the Go version.
func busybox(ctx context.Context, cfg Config, tmp string) (path string, cached bool, err error) {
	key, err := busyboxKey(ctx, cfg)
	if err != nil {
		return "", false, err
	}
	path = filepath.Join(tmp, "busybox.cpio")
	if cfg.CacheDir != "" {
		path = filepath.Join(cfg.CacheDir, "busybox-"+key+".cpio")
		if _, err := os.Stat(path); err == nil {
			return path, true, nil
		}
	}
	building := filepath.Join(tmp, "busybox-building.cpio")
	env := golang.Default(golang.DisableCGO(), golang.WithGOARCH("amd64"), golang.WithWorkingDir(cfg.GoDir))
	err = create(ctx, cfg.Logger,
		uimage.WithReplaceEnv(env),
		uimage.WithBaseArchive(uimage.DefaultRamfs()),
		uimage.WithBusyboxCommands(commandPaths(cfg.Commands)...),
		uimage.WithInit("init"),
		uimage.WithShell("gosh"),
		uimage.WithTempDir(tmp),
		uimage.WithCPIOOutput(building),
	)
	if err != nil {
		return "", false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, fmt.Errorf("initramfs: %w", err)
	}
	if err := os.Rename(building, path); err != nil {
		return "", false, fmt.Errorf("initramfs: %w", err)
	}
	if cfg.CacheDir != "" {
		pruneBusyboxes(cfg.CacheDir, path)
	}
	return path, false, nil
}

// pruneBusyboxes removes the busyboxes in dir other than keep: they were
// built from another go.mod or command list and will not be used again.
func pruneBusyboxes(dir, keep string) {
	old, _ := filepath.Glob(filepath.Join(dir, "busybox-*.cpio"))
	for _, p := range old {
		if p != keep {
			os.Remove(p)
		}
	}
}

// busyboxKey hashes what the busybox is built from.
func busyboxKey(ctx context.Context, cfg Config) (string, error) {
	h := sha256.New()
	fmt.Fprintf(h, "%q\n", commandPaths(cfg.Commands))
	for _, f := range []string{"go.mod", "go.sum"} {
		b, err := os.ReadFile(filepath.Join(cfg.GoDir, f))
		if err != nil {
			return "", fmt.Errorf("initramfs: %w", err)
		}
		h.Write(b)
	}
	cmd := exec.CommandContext(ctx, "go", "env", "GOVERSION", "GOARCH", "GOFLAGS")
	cmd.Dir = cfg.GoDir
	v, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("initramfs: go env: %w", err)
	}
	h.Write(v)
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// create runs mkuimage.
func create(ctx context.Context, log *slog.Logger, mods ...uimage.Modifier) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := uimage.Create(llogFor(ctx, log), mods...); err != nil {
		return fmt.Errorf("initramfs: %w", err)
	}
	return nil
}

// commandPaths returns the import paths of u-root core commands.
func commandPaths(names []string) []string {
	if names == nil {
		names = Commands
	}
	var out []string
	for _, n := range names {
		if strings.Contains(n, "/") {
			out = append(out, n)
		} else {
			out = append(out, uroot+n)
		}
	}
	return out
}

// llogFor adapts an slog.Logger to the leveled logger mkuimage wants;
// mkuimage's chatter goes in at debug level, its warnings as they are.
func llogFor(ctx context.Context, log *slog.Logger) *llog.Logger {
	return &llog.Logger{
		Level: slog.LevelDebug,
		Sink: func(level slog.Level, format string, args ...any) {
			if level < slog.LevelWarn {
				level = slog.LevelDebug
			}
			log.Log(ctx, level, "mkuimage: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
		},
	}
}
