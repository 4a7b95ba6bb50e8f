package api

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"strings"
	"testing"
)

// readerClient is an HTTPS client as Prometheus makes one from the files
// of drift cert: it verifies the agent against the CA file with
// server_name, and presents the metrics reader's certificate and key.
func readerClient(t *testing.T, f MetricsReaderFiles) *http.Client {
	t.Helper()
	cert, err := tls.X509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatalf("load the metrics reader's PEM files: %v", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(f.CA) {
		t.Fatal("the CA file holds no certificate")
	}
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, ServerName: f.ServerName, Certificates: []tls.Certificate{cert},
	}}}
}

// The metrics reader's certificate reads /metrics and is refused every
// other route, whatever the method; the cluster's certificate is not
// limited.
func TestMetricsReaderOnlyReadsMetrics(t *testing.T) {
	key := mustKey(t)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "answered") })
	_, addr, _ := startServerRoutes(t, key, map[string]http.Handler{
		"GET " + MetricsPath: ok, "POST /v1/jobs": ok, "GET /v1/jobs": ok, "POST /v1/jobs/{id}/migrate": ok,
	})
	files, err := MetricsReader(key)
	if err != nil {
		t.Fatal(err)
	}
	reader := readerClient(t, files)
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{"GET", MetricsPath, http.StatusOK},
		{"POST", MetricsPath, http.StatusForbidden},
		{"GET", "/v1/nodes", http.StatusForbidden},
		{"GET", "/v1/status", http.StatusForbidden},
		{"GET", "/v1/jobs", http.StatusForbidden},
		{"POST", "/v1/jobs", http.StatusForbidden},
		{"POST", "/v1/jobs/1/migrate", http.StatusForbidden},
		{"GET", "/v1/events", http.StatusForbidden},
		{"GET", "/metrics/../v1/nodes", http.StatusForbidden},
		{"GET", "/nonexistent", http.StatusForbidden},
	} {
		req, _ := http.NewRequest(tt.method, "https://"+addr+tt.path, strings.NewReader("{}"))
		resp, err := reader.Do(req)
		if err != nil {
			t.Fatalf("%s %s with the metrics reader's certificate: %v", tt.method, tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s %s with the metrics reader's certificate = %d %q, want %d", tt.method, tt.path, resp.StatusCode, body, tt.want)
		}
		if tt.want == http.StatusForbidden && bytes.Contains(body, []byte("answered")) {
			t.Errorf("%s %s: the route answered the metrics reader", tt.method, tt.path)
		}
	}
	// The cluster's certificate is not limited.
	c, err := Remote(addr, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Nodes(context.Background()); err != nil {
		t.Errorf("Nodes with the cluster's certificate: %v", err)
	}
	if err := c.Call(context.Background(), "POST", "/v1/jobs", nil, nil); err != nil {
		t.Errorf("POST /v1/jobs with the cluster's certificate: %v", err)
	}
}

// Another cluster's metrics reader is refused at the handshake.
func TestMetricsReaderOfAnotherCluster(t *testing.T) {
	key := mustKey(t)
	_, addr, _ := startServerRoutes(t, key, map[string]http.Handler{"GET " + MetricsPath: http.NotFoundHandler()})
	other, err := MetricsReader(mustKey(t))
	if err != nil {
		t.Fatal(err)
	}
	mine, _ := MetricsReader(key)
	other.CA, other.ServerName = mine.CA, mine.ServerName // it trusts this agent, but holds another key's certificate
	resp, err := readerClient(t, other).Get("https://" + addr + MetricsPath)
	if err == nil {
		resp.Body.Close()
		t.Fatalf("GET %s with another cluster's reader certificate = %s, want a refused handshake", MetricsPath, resp.Status)
	}
}

func TestMetricsCertificate(t *testing.T) {
	k := mustKey(t)
	a, err := MetricsCertificate(k)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := MetricsCertificate(k)
	cluster, _ := Certificate(k)
	switch {
	case !bytes.Equal(a.Certificate[0], b.Certificate[0]):
		t.Error("MetricsCertificate(k) differs between two calls")
	case bytes.Equal(a.Certificate[0], cluster.Certificate[0]):
		t.Error("the metrics reader's certificate is the cluster's")
	case len(a.Leaf.Subject.OrganizationalUnit) != 1 || a.Leaf.Subject.OrganizationalUnit[0] != MetricsReaderOU:
		t.Errorf("OU = %q, want %q", a.Leaf.Subject.OrganizationalUnit, MetricsReaderOU)
	case len(a.Leaf.ExtKeyUsage) != 1 || a.Leaf.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth:
		t.Errorf("ExtKeyUsage = %v, want client authentication only", a.Leaf.ExtKeyUsage)
	}
	files, _ := MetricsReader(k)
	if strings.Contains(string(files.Key)+string(files.Cert)+string(files.CA), k.Hex()) {
		t.Error("the metrics reader's files contain the cluster key")
	}
}
