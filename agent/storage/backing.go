package storage

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

// BackingConfig says where to look for the backing store.
type BackingConfig struct {
	Dir      string        // mount point; "": DataDir
	Label    string        // "": DataLabel
	SysBlock string        // "": /sys/class/block
	DevDir   string        // "": /dev
	Wait     time.Duration // how long to wait for the labelled partition to appear (disk drivers probe asynchronously); 0: 3s
	// LoadModule loads the kernel module of a file system type before it
	// is mounted; nil: none (the module is loaded or built in).
	LoadModule func(fstype string) error
	Logger     *slog.Logger // nil: slog.Default()
}

// PrepareBacking mounts the head's backing store at cfg.Dir: the
// partition labelled DRIFT-DATA if there is one, else a tmpfs (and then
// Backing.Persistent is false). A partition that is found but cannot be
// mounted is reported in Backing.Error, and a tmpfs used instead: the
// cluster keeps working, and `drift storage` says the data is not kept.
// If something is already mounted at cfg.Dir (the agent restarted), it is
// used as it is.
func PrepareBacking(ctx context.Context, cfg BackingConfig) (api.Backing, error) {
	dir := cfg.Dir
	if dir == "" {
		dir = DataDir
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if b, ok := mountedAt(dir); ok {
		return b, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return api.Backing{}, fmt.Errorf("backing store %s: %w", dir, err)
	}
	label := cfg.Label
	if label == "" {
		label = DataLabel
	}
	sys, dev := cfg.SysBlock, cfg.DevDir
	if sys == "" {
		sys = "/sys/class/block"
	}
	if dev == "" {
		dev = "/dev"
	}
	var (
		d   Device
		err error
	)
	deadline := time.Now().Add(orDefault(cfg.Wait, 3*time.Second))
	for {
		d, err = FindLabel(sys, dev, label)
		if err == nil || time.Now().After(deadline) || !sleep(ctx, 250*time.Millisecond) {
			break
		}
	}
	var b api.Backing
	if err == nil {
		b = api.Backing{Dir: dir, Device: d.Path, FSType: d.FSType, Label: d.Label, Persistent: true}
		if cfg.LoadModule != nil {
			if err := cfg.LoadModule(d.FSType); err != nil {
				log.Warn("load file system module", "fs", d.FSType, "err", err)
			}
		}
		if err := unix.Mount(d.Path, dir, d.FSType, unix.MS_NOATIME, ""); err != nil {
			b = api.Backing{Error: fmt.Sprintf("mount %s (%s, label %s) on %s: %v", d.Path, d.FSType, label, dir, err)}
			log.Error("backing store: partition found but not mounted; using a tmpfs", "err", b.Error)
		} else {
			return b, nil
		}
	} else if !errors.Is(err, ErrNoLabel) {
		log.Warn("backing store: looking for a partition", "label", label, "err", err)
	}
	if err := unix.Mount("drift-data", dir, "tmpfs", 0, "mode=0755"); err != nil {
		return api.Backing{}, fmt.Errorf("backing store: mount tmpfs on %s: %w", dir, err)
	}
	b.Dir, b.FSType, b.Persistent = dir, "tmpfs", false
	return b, nil
}

// mountedAt reports what /proc/self/mounts says is mounted at dir.
func mountedAt(dir string) (api.Backing, bool) {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return api.Backing{}, false
	}
	defer f.Close()
	var b api.Backing
	found := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 3 || fs[1] != dir {
			continue
		}
		b = api.Backing{Dir: dir, Device: fs[0], FSType: fs[2], Persistent: fs[2] != "tmpfs" && fs[2] != "ramfs"}
		if !b.Persistent {
			b.Device = ""
		}
		found = true // the last one listed is on top
	}
	return b, found
}

// SpaceOf returns the size of the file system at dir.
func SpaceOf(dir string) (Space, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return Space{}, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return Space{Total: st.Blocks * uint64(st.Bsize), Free: st.Bavail * uint64(st.Bsize)}, nil
}
