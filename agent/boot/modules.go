package boot

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Alias is one line of modules.alias: devices whose modalias matches
// Pattern (a shell glob) are driven by Module.
type Alias struct {
	Pattern string
	Module  string
}

// AliasTable matches device modaliases to modules.
type AliasTable struct {
	// byPrefix holds the aliases by their pattern's literal text before
	// its first wildcard, so that a modalias is matched only against the
	// patterns whose prefix it starts with (a few of thousands).
	byPrefix map[string][]alias
}

type alias struct {
	Alias
	index  int  // in the file
	anyBus bool // the pattern's type part holds a wildcard: matched after the others
}

// ParseAliases reads a modules.alias file. Lines that are not
// "alias PATTERN MODULE", and patterns that are not valid globs, are skipped.
func ParseAliases(r io.Reader) (*AliasTable, error) {
	t := &AliasTable{byPrefix: map[string][]alias{}}
	n := 0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "alias" {
			continue
		}
		if _, err := path.Match(f[1], ""); err != nil {
			continue
		}
		prefix := f[1]
		if i := strings.IndexAny(prefix, "*?[\\"); i >= 0 {
			prefix = prefix[:i]
		}
		t.byPrefix[prefix] = append(t.byPrefix[prefix], alias{Alias: Alias{Pattern: f[1], Module: f[2]}, index: n, anyBus: bus(f[1]) == ""})
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read modules.alias: %w", err)
	}
	return t, nil
}

// bus returns the modalias type ("pci", "usb", "virtio"...) or "" if the
// pattern's type part holds a wildcard.
func bus(s string) string {
	b, _, ok := strings.Cut(s, ":")
	if !ok || strings.ContainsAny(b, "*?[") {
		return ""
	}
	return b
}

// Match returns the modules whose aliases match modalias, without
// duplicates: those of patterns with a literal type ("pci:...") first,
// then those whose type holds a wildcard, each in file order.
func (t *AliasTable) Match(modalias string) []string {
	var hits []alias
	for i := 0; i <= len(modalias); i++ {
		for _, a := range t.byPrefix[modalias[:i]] {
			if !a.anyBus && bus(modalias) == "" {
				continue // a typed pattern never matches an untyped modalias
			}
			if ok, _ := path.Match(a.Pattern, modalias); ok {
				hits = append(hits, a)
			}
		}
	}
	slices.SortFunc(hits, func(a, b alias) int {
		if a.anyBus != b.anyBus {
			if a.anyBus {
				return 1
			}
			return -1
		}
		return a.index - b.index
	})
	var mods []string
	for _, a := range hits {
		if !slices.Contains(mods, a.Module) {
			mods = append(mods, a.Module)
		}
	}
	return mods
}

// DeviceAliases returns the modalias of every device under sysDir/devices.
func DeviceAliases(sysDir string) ([]string, error) {
	var out []string
	root := filepath.Join(sysDir, "devices")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // devices come and go while we walk
		}
		if d.Name() != "modalias" || d.IsDir() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err == nil {
			if s := strings.TrimSpace(string(b)); s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", root, err)
	}
	return out, nil
}

// BusAliases returns the modalias of every device on the given buses
// ("pci", "virtio"...), from sysDir/bus/BUS/devices: much less to read
// than DeviceAliases's walk of every device when only a few buses matter.
func BusAliases(sysDir string, buses []string) ([]string, error) {
	var out []string
	for _, b := range buses {
		dir := filepath.Join(sysDir, "bus", b, "devices")
		ents, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue // the bus's driver is not loaded yet
		}
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		for _, e := range ents {
			b, err := os.ReadFile(filepath.Join(dir, e.Name(), "modalias"))
			if err != nil {
				continue // a device without one, or gone
			}
			if s := strings.TrimSpace(string(b)); s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}

// Coldplug loads modules for the hardware present.
type Coldplug struct {
	SysDir  string                     // "": /sys
	Aliases *AliasTable                // required
	Load    func(name string) error    // loads a module with its dependencies; required
	Always  []string                   // modules loaded whatever the hardware
	Logger  *slog.Logger               // nil: slog.Default()
	Rounds  int                        // 0: 5; loading a bus driver reveals new devices, so match again
	Devices func(modalias string) bool // which devices to load modules for; nil: every device
	Buses   []string                   // only look at the devices on these buses (BusAliases); nil: every device (DeviceAliases)
}

// EarlyBuses are the buses EarlyDevice's devices sit on.
var EarlyBuses = []string{"pci", "virtio"}

// EarlyDevice reports whether a device's driver is needed before the node
// can say it is ready: network cards (PCI class 02), the virtio PCI bus
// they and the lab's console port sit on, and on that bus the network
// card and the console port (virtio device ids 1 and 3). Everything else
// (disks, USB, sound...) can be driven in the background.
func EarlyDevice(modalias string) bool {
	switch {
	case strings.HasPrefix(modalias, "pci:"):
		return strings.Contains(modalias, "bc02") || strings.HasPrefix(modalias, "pci:v00001AF4")
	case strings.HasPrefix(modalias, "virtio:"):
		return strings.HasPrefix(modalias, "virtio:d00000001v") || strings.HasPrefix(modalias, "virtio:d00000003v")
	}
	return false
}

// Run loads Always, then matches devices to modules until no new module
// loads. It returns the modules it loaded. A module that fails to load
// is logged and skipped: one bad driver must not stop the boot.
func (c *Coldplug) Run(ctx context.Context) ([]string, error) {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	sys := c.SysDir
	if sys == "" {
		sys = "/sys"
	}
	rounds := c.Rounds
	if rounds == 0 {
		rounds = 5
	}
	tried := map[string]bool{}
	var loaded []string
	load := func(m, why string) bool {
		if tried[m] {
			return false
		}
		tried[m] = true
		if err := c.Load(m); err != nil {
			log.Warn("load module", "module", m, "for", why, "err", err)
			return false
		}
		loaded = append(loaded, m)
		return true
	}
	for _, m := range c.Always {
		load(m, "always")
	}
	for range rounds {
		if err := ctx.Err(); err != nil {
			return loaded, err
		}
		var (
			devs []string
			err  error
		)
		if c.Buses != nil {
			devs, err = BusAliases(sys, c.Buses)
		} else {
			devs, err = DeviceAliases(sys)
		}
		if err != nil {
			return loaded, err
		}
		progress := false
		for _, d := range devs {
			if c.Devices != nil && !c.Devices(d) {
				continue
			}
			for _, m := range c.Aliases.Match(d) {
				if load(m, d) {
					progress = true
				}
			}
		}
		if !progress {
			break
		}
	}
	return loaded, nil
}
