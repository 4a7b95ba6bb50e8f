// Package version tells which drift release a binary or image is.
//
// The build sets Version with -ldflags "-X github.com/driftcluster/drift/agent/version.Version=V";
// binaries built without it (go build ./... on a fresh clone) read the
// version baked into the image at /etc/drift/version, or say "dev".
package version

import (
	"os"
	"strings"
)

// Version is set at link time. Empty means "not set".
var Version string

// File is where an image records its version.
const File = "/etc/drift/version"

// Get returns the drift version of this binary or image.
func Get() string {
	if Version != "" {
		return Version
	}
	if b, err := os.ReadFile(File); err == nil {
		if v := strings.TrimSpace(string(b)); v != "" {
			return v
		}
	}
	return "dev"
}
