package api

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// MetricsPath is where every agent serves its Prometheus metrics, on
// the API port.
const MetricsPath = "/metrics"

// metricsCertInfo separates the metrics reader's key from every other
// use of the cluster key.
const metricsCertInfo = "drift metrics reader v1"

// MetricsReaderOU is the organizational unit of the metrics reader's
// certificate: the role it stands for.
const MetricsReaderOU = "drift-metrics-reader"

// MetricsCertificate derives the certificate of a metrics reader (a
// Prometheus server) from the cluster key, as Certificate derives the
// cluster's: an ed25519 key from HKDF-SHA256(key, info "drift metrics
// reader v1") and a self-signed certificate for client authentication
// only. An agent lets its holder read MetricsPath and nothing else; the
// key cannot be recovered from it.
func MetricsCertificate(k clusterkey.Key) (tls.Certificate, error) {
	return derive(k, metricsCertInfo, &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "drift-metrics-" + k.ID(), OrganizationalUnit: []string{MetricsReaderOU}},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	})
}

// ServerName is the name in the cluster's certificate, which a client
// that verifies the agents' certificate against CA (such as Prometheus,
// with server_name) expects: drift-cluster-ID.
func ServerName(k clusterkey.Key) string { return "drift-cluster-" + k.ID() }

// MetricsReaderFiles are the PEM files a Prometheus server needs to
// scrape the agents: the CA that the agents' certificate verifies
// against (the cluster's self-signed certificate: public), and the
// metrics reader's certificate and private key.
type MetricsReaderFiles struct {
	CA, Cert, Key []byte
	ServerName    string // for tls_config's server_name
}

// MetricsReader returns the metrics reader's files for the cluster of k.
func MetricsReader(k clusterkey.Key) (MetricsReaderFiles, error) {
	cluster, err := Certificate(k)
	if err != nil {
		return MetricsReaderFiles{}, err
	}
	reader, err := MetricsCertificate(k)
	if err != nil {
		return MetricsReaderFiles{}, err
	}
	key, err := x509.MarshalPKCS8PrivateKey(reader.PrivateKey)
	if err != nil {
		return MetricsReaderFiles{}, fmt.Errorf("encode metrics key: %w", err)
	}
	return MetricsReaderFiles{
		CA:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cluster.Certificate[0]}),
		Cert:       pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: reader.Certificate[0]}),
		Key:        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key}),
		ServerName: ServerName(k),
	}, nil
}

// pinnedAny returns a VerifyPeerCertificate that accepts exactly one of
// certs.
func pinnedAny(certs ...tls.Certificate) func([][]byte, [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) != 1 {
			return ErrWrongKey
		}
		for _, c := range certs {
			if bytes.Equal(raw[0], c.Certificate[0]) {
				return nil
			}
		}
		return ErrWrongKey
	}
}

// keyGate wraps the API's handler for clients over TLS. A client that
// presented the metrics reader's certificate may GET MetricsPath and is
// refused everything else (403). A client whose certificate belongs to a
// key the agent no longer accepts (a keep-alive connection opened before
// drift rekey dropped that key) is refused every request (401). Clients
// with the cluster's certificate, and the unix socket, pass.
func keyGate(r *clusterkey.Ring, certs *certCache, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.TLS == nil || len(req.TLS.PeerCertificates) == 0 {
			next.ServeHTTP(w, req)
			return
		}
		ok, reader := certs.accepted(r, req.TLS.PeerCertificates[0].Raw)
		switch {
		case !ok:
			w.Header().Set("Connection", "close")
			http.Error(w, "this connection's key is no longer the cluster's (drift rekey replaced it): use the new key file", http.StatusUnauthorized)
			return
		case reader && (req.URL.Path != MetricsPath || (req.Method != http.MethodGet && req.Method != http.MethodHead)):
			http.Error(w, "this certificate may only read "+MetricsPath+" (it is a metrics reader's, from drift cert)", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, req)
	})
}
