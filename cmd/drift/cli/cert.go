package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/clusterkey"
)

// The files drift cert writes.
const (
	certCAFile   = "ca.crt"
	certFile     = "metrics.crt"
	certKeyFile  = "metrics.key"
	certPromFile = "prometheus-scrape.yml"
)

// runCert writes, from the cluster key, the files a Prometheus server
// needs to scrape the agents' /metrics: the agents' CA, and a metrics
// reader's certificate and key, which the agents let read /metrics and
// nothing else. It needs no agent: the files are derived from the key.
func runCert(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("cert", "--out DIR [--key-file F]", stderr)
	out := fs.String("out", "", "the `DIR`ectory to write "+certCAFile+", "+certFile+", "+certKeyFile+" and "+certPromFile+" to")
	keyFile := fs.String("key-file", os.Getenv("DRIFT_KEY_FILE"), "`F`ile holding the cluster key (env DRIFT_KEY_FILE; on a node /etc/drift/cluster.key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" || *keyFile == "" || fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("want --out DIR and --key-file F: %w", errUsage)
	}
	k, err := clusterkey.LoadFile(*keyFile)
	if err != nil {
		return err
	}
	files, err := api.MetricsReader(k)
	if err != nil {
		return err
	}
	dir, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("drift cert: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{certCAFile, files.CA, 0o644},
		{certFile, files.Cert, 0o644},
		{certKeyFile, files.Key, 0o600},
		{certPromFile, []byte(scrapeConfig(dir, files.ServerName)), 0o644},
	} {
		if err := os.WriteFile(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("drift cert: %w", err)
		}
	}
	fmt.Fprintf(stdout, "wrote %s, %s, %s and %s in %s: paste %s into prometheus.yml's scrape_configs and list the nodes' addresses\n",
		certCAFile, certFile, certKeyFile, certPromFile, dir, certPromFile)
	return nil
}

// scrapeConfig is a Prometheus scrape job for the agents at the API's
// port, with the files of drift cert in dir.
func scrapeConfig(dir, serverName string) string {
	return fmt.Sprintf(`- job_name: drift
  scheme: https
  metrics_path: %s
  tls_config:
    ca_file: %s
    cert_file: %s
    key_file: %s
    server_name: %s
  static_configs:
    - targets: ["NODE-ADDRESS:%d"] # one per node, or any service discovery
`, api.MetricsPath, filepath.Join(dir, certCAFile), filepath.Join(dir, certFile), filepath.Join(dir, certKeyFile), serverName, api.DefaultPort)
}
