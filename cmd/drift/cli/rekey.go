package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

func runRekey(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("rekey", "[--out FILE] [--json] [--cluster ADDR --key-file F]", stderr)
	rf := addRekeyFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("takes no arguments, got %q: %w", fs.Args(), errUsage)
	}
	c, err := rf.prepare()
	if err != nil {
		return err
	}
	res, err := c.Rekey(ctx, api.RekeyRequest{})
	if res.Key == "" {
		return err // nothing changed
	}
	shown := res
	shown.Key = "" // it goes to --out, not to the screen
	return rf.report(stdout, stderr, res, shown, err)
}

// rekeyFlags are the flags of the commands that move the cluster to a new
// key (drift rekey, drift remove).
type rekeyFlags struct {
	cf     *clientFlags
	out    string
	asJSON bool
}

func addRekeyFlags(fs *flag.FlagSet) *rekeyFlags {
	rf := &rekeyFlags{cf: addClientFlags(fs)}
	fs.StringVar(&rf.out, "out", "", "write the new key `FILE` here (mode 0600); needed with --cluster, whose --key-file stops working")
	fs.BoolVar(&rf.asJSON, "json", false, "print as JSON (without the key: it goes to --out)")
	return rf
}

// prepare checks, before anything changes, that the new key will have a
// place to go, and returns the client.
func (rf *rekeyFlags) prepare() (*api.Client, error) {
	if rf.cf.cluster != "" && rf.out == "" {
		return nil, fmt.Errorf("--out FILE is needed with --cluster: once the cluster has the new key, the key in %s no longer opens it: %w", rf.cf.keyFile, errUsage)
	}
	if rf.out != "" {
		if st, err := os.Stat(rf.out); err == nil && st.IsDir() {
			return nil, fmt.Errorf("--out %s is a directory: name the key file to write", rf.out)
		}
		f, err := os.CreateTemp(filepath.Dir(rf.out), ".drift-rekey-*")
		if err != nil {
			return nil, fmt.Errorf("--out %s: cannot write there (%w): choose a writable place before the cluster changes key", rf.out, err)
		}
		f.Close()
		os.Remove(f.Name())
	}
	return rf.cf.client()
}

// report writes the new key to --out and prints what the rekey did; v is
// what --json prints (res, or a RemoveResult that holds it). rerr is the
// rekey's own error, when it stopped part way.
func (rf *rekeyFlags) report(stdout, stderr io.Writer, res api.RekeyResult, v any, rerr error) error {
	var werr error
	if rf.out != "" {
		werr = writeNewKey(rf.out, res)
		if werr != nil {
			// The cluster uses the key now: it must not be lost.
			fmt.Fprintf(stderr, "drift: could not write the new key to %s (%v); here it is, keep it as a key file (first line the key, second line as shown):\n%s\ncluster %s\n", rf.out, werr, res.Key, res.ClusterID)
		}
	}
	if rf.asJSON {
		if err := json.NewEncoder(stdout).Encode(v); err != nil {
			return err
		}
	} else {
		printRekey(stdout, res, rf.out, werr == nil)
	}
	if rerr != nil {
		return rerr
	}
	if werr != nil {
		return werr
	}
	if len(res.Missed) > 0 {
		return exitError{code: 3}
	}
	return nil
}

// writeNewKey writes the key file of res to path.
func writeNewKey(path string, res api.RekeyResult) error {
	k, err := clusterkey.Parse([]byte(res.Key))
	if err != nil {
		return fmt.Errorf("the agent's answer: %w", err)
	}
	return clusterkey.WriteCluster(path, clusterkey.Cluster{ID: res.ClusterID, Key: k})
}

func printRekey(w io.Writer, res api.RekeyResult, out string, written bool) {
	fmt.Fprintf(w, "cluster %s: key %s replaced by key %s\n", res.ClusterID, res.OldKeyID, res.KeyID)
	fmt.Fprintf(w, "took the new key (%d): %s\n", len(res.Took), strings.Join(res.Took, " "))
	if len(res.Missed) > 0 {
		fmt.Fprintf(w, "did not take it (%d): the cluster refuses them now; boot them from a medium made with the new key, or network-boot them from the head:\n", len(res.Missed))
		for _, m := range res.Missed {
			fmt.Fprintf(w, "  %s  %s\n", m.Node, m.Error)
		}
	}
	switch {
	case out != "" && written:
		fmt.Fprintf(w, "new key file: %s (use it with --key-file; make new boot media with it: make image KEY_FILE=%s)\n", out, out)
	case out == "":
		fmt.Fprintf(w, "new key file: /etc/drift/cluster.key on every node (copy it off with drift rekey --out next time, or from a node's console); make new boot media with it\n")
	}
	fmt.Fprintf(w, "the old key no longer opens the cluster; ISO and USB media made before now carry it: remake them\n")
}
