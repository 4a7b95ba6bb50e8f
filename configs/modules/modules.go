// Package modules holds the lists of kernel modules that go into the drift
// image, one file per purpose (nics.list, media.list, fs.list, virt.list,
// criu.list, always.list, packages.list). drift-image includes every listed
// module with its dependencies (packages.list only in an image built with
// Debian packages); the agent loads always.list at boot, packages.list
// when the image has packages, and the rest when a device's modalias asks
// for them.
//
// A list names one module per line; '#' starts a comment.
package modules

import (
	"bufio"
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

//go:embed *.list
var lists embed.FS

// Always is the name of the list the agent loads whatever the hardware.
const Always = "always.list"

// Packages is the name of the list of what mounting an image's Debian
// packages needs (agent/packages).
const Packages = "packages.list"

// Lists returns every embedded list by file name, e.g. "nics.list".
func Lists() (map[string][]string, error) {
	names, err := fs.Glob(lists, "*.list")
	if err != nil {
		return nil, err
	}
	out := make(map[string][]string, len(names))
	for _, n := range names {
		mods, err := Read(n)
		if err != nil {
			return nil, err
		}
		out[n] = mods
	}
	return out, nil
}

// Read returns the module names in the embedded list name.
func Read(name string) ([]string, error) {
	b, err := lists.ReadFile(path.Clean(name))
	if err != nil {
		return nil, fmt.Errorf("module list %s: %w", name, err)
	}
	return Parse(b), nil
}

// Parse returns the module names in a list's text, in order, without
// comments, blank lines or duplicates.
func Parse(text []byte) []string {
	var out []string
	seen := map[string]bool{}
	sc := bufio.NewScanner(bytes.NewReader(text))
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		for _, name := range strings.Fields(line) {
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	return out
}

// SortedNames returns the keys of lists in order, for stable output.
func SortedNames(lists map[string][]string) []string {
	names := make([]string, 0, len(lists))
	for n := range lists {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
