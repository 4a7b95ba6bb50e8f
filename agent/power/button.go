package power

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// ButtonName is the name the kernel's ACPI button driver gives the power
// button's input device (there may be two: the fixed-feature button and
// a PNP0C0C device).
const ButtonName = "Power Button"

// ErrNoButton says the machine shows no power button: its kernel lacks
// the ACPI button or evdev driver, or the machine has no ACPI.
var ErrNoButton = errors.New("no input device named " + strconv.Quote(ButtonName) + " (kernel modules button and evdev)")

// Buttons returns the event devices ("event0", ...) whose input device is
// named ButtonName, as sysDir/class/input lists them, in name order.
func Buttons(sysDir string) ([]string, error) {
	dir := filepath.Join(sysDir, "class", "input")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list input devices: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "event") {
			continue
		}
		name, err := os.ReadFile(filepath.Join(dir, e.Name(), "device", "name"))
		if err == nil && strings.TrimSpace(string(name)) == ButtonName {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out, nil
}

// Watcher reads the key presses of the machine's power buttons.
type Watcher struct {
	Sys    string        // where sysfs is mounted; "": /sys
	Dev    string        // where the event device nodes are; "": /dev/input
	Logger *slog.Logger  // nil: slog.Default()
	Wait   time.Duration // how long Run looks for a button before ErrNoButton; 0: 10s
}

func (w *Watcher) log() *slog.Logger {
	if w.Logger != nil {
		return w.Logger
	}
	return slog.Default()
}

func (w *Watcher) sys() string {
	if w.Sys != "" {
		return w.Sys
	}
	return "/sys"
}

func (w *Watcher) dev() string {
	if w.Dev != "" {
		return w.Dev
	}
	return "/dev/input"
}

// Run calls pressed for every press of a power button until ctx ends. It
// returns ErrNoButton (wrapped) when no button shows up within Wait, and
// an error when reading a button fails.
func (w *Watcher) Run(ctx context.Context, pressed func()) error {
	wait := w.Wait
	if wait <= 0 {
		wait = 10 * time.Second
	}
	var names []string
	for deadline := time.Now().Add(wait); ; {
		var err error
		names, err = Buttons(w.sys())
		if len(names) > 0 {
			break
		}
		if time.Now().After(deadline) {
			if err != nil {
				return fmt.Errorf("%w: %w", ErrNoButton, err)
			}
			return ErrNoButton
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(500 * time.Millisecond):
		}
	}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	for _, name := range names {
		f, err := w.open(name)
		if err != nil {
			return err
		}
		files = append(files, f)
	}
	w.log().Info("power button: watching", "devices", strings.Join(names, " "))
	errs := make(chan error, len(files))
	var wg sync.WaitGroup
	for _, f := range files {
		wg.Go(func() { errs <- ReadPresses(f, pressed) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
	}
	for _, f := range files { // ends the other reads
		f.Close()
	}
	files = nil
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	if err == nil {
		err = errors.New("the device ended")
	}
	return fmt.Errorf("power button: %w", err)
}

// open opens event device name, making its node from sysfs's dev file
// first if /dev has none (a /dev that is not devtmpfs).
func (w *Watcher) open(name string) (*os.File, error) {
	path := filepath.Join(w.dev(), name)
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if !errors.Is(err, os.ErrNotExist) {
		return f, err
	}
	b, err := os.ReadFile(filepath.Join(w.sys(), "class", "input", name, "dev"))
	if err != nil {
		return nil, fmt.Errorf("open %s: no device node, and no device number: %w", path, err)
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(b)), "%d:%d", &major, &minor); err != nil {
		return nil, fmt.Errorf("open %s: device number %q: %w", path, b, err)
	}
	if err := os.MkdirAll(w.dev(), 0o755); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := unix.Mknod(path, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("make device node %s: %w", path, err)
	}
	return os.OpenFile(path, os.O_RDONLY, 0)
}
