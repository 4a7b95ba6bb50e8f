package cli

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// clientFlags are the flags of every command that talks to an agent: by
// default the agent on this machine (its unix socket); with --cluster and
// --key-file, any node of the cluster over mutual TLS.
type clientFlags struct {
	cluster string
	keyFile string
	socket  string
}

// addClientFlags registers the client flags on fs. Their defaults come
// from DRIFT_CLUSTER, DRIFT_KEY_FILE and DRIFT_SOCKET.
func addClientFlags(fs *flag.FlagSet) *clientFlags {
	f := &clientFlags{}
	fs.StringVar(&f.cluster, "cluster", os.Getenv("DRIFT_CLUSTER"), "`ADDR`[:PORT] of any node, to work from a host (env DRIFT_CLUSTER)")
	fs.StringVar(&f.keyFile, "key-file", os.Getenv("DRIFT_KEY_FILE"), "`F`ile holding the cluster key, with --cluster (env DRIFT_KEY_FILE)")
	sock := os.Getenv("DRIFT_SOCKET")
	if sock == "" {
		sock = api.DefaultSocket
	}
	fs.StringVar(&f.socket, "socket", sock, "the local agent's API socket (env DRIFT_SOCKET)")
	return f
}

// client returns the API client the flags ask for.
func (f *clientFlags) client() (*api.Client, error) {
	if f.cluster == "" {
		return api.Local(f.socket), nil
	}
	if f.keyFile == "" {
		return nil, fmt.Errorf("--cluster %s needs --key-file F, the cluster's key file: %w", f.cluster, errUsage)
	}
	k, err := clusterkey.LoadFile(f.keyFile)
	if err != nil {
		return nil, err
	}
	return api.Remote(f.cluster, k)
}

// hoistGlobalFlags moves client flags written before the command name
// ("drift --cluster A --key-file F nodes --json") after it ("drift nodes
// --cluster A --key-file F --json"), where the command parses them.
func hoistGlobalFlags(args []string) []string {
	var global []string
	i := 0
	for i < len(args) {
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || (name != "cluster" && name != "key-file" && name != "socket") {
			break
		}
		global = append(global, args[i])
		i++
		if !hasValue && i < len(args) {
			global = append(global, args[i])
			i++
		}
	}
	if len(global) == 0 || i == len(args) {
		return args
	}
	out := append([]string{args[i]}, global...)
	return append(out, args[i+1:]...)
}

// humanBytes formats n bytes as 512B, 1.5K, 23M, 7.8G.
func humanBytes(n uint64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%dB", n)
	}
	v, u := float64(n)/1024, 0
	for v >= 1024 && u < len(units)-1 {
		v /= 1024
		u++
	}
	if v < 10 {
		return fmt.Sprintf("%.1f%c", v, units[u])
	}
	return fmt.Sprintf("%.0f%c", v, units[u])
}

// humanDuration formats d with its two largest units: 45s, 12m3s, 5h12m, 3d4h.
func humanDuration(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	s := int64(d.Round(time.Second) / time.Second)
	switch {
	case s < 60:
		return fmt.Sprintf("%ds", s)
	case s < 3600:
		return fmt.Sprintf("%dm%ds", s/60, s%60)
	case s < 86400:
		return fmt.Sprintf("%dh%dm", s/3600, s%3600/60)
	}
	return fmt.Sprintf("%dd%dh", s/86400, s%86400/3600)
}
