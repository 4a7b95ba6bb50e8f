package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/driftcluster/drift/agent/version"
	"golang.org/x/sys/unix"
)

type versionInfo struct {
	Version string `json:"version"`
	Go      string `json:"go"`
	Kernel  string `json:"kernel"`
}

func runVersion(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("version", "[--json]", stderr)
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var u unix.Utsname
	unix.Uname(&u)
	v := versionInfo{Version: version.Get(), Go: runtime.Version(), Kernel: unix.ByteSliceToString(u.Release[:])}
	if *asJSON {
		e := json.NewEncoder(stdout)
		e.SetIndent("", "  ")
		return e.Encode(v)
	}
	_, err := fmt.Fprintf(stdout, "drift %s (%s, kernel %s)\n", v.Version, v.Go, v.Kernel)
	return err
}
