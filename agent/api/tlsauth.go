package api

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// certInfo separates the API key from every other use of the cluster key.
const certInfo = "drift api v1"

// ErrWrongKey reports a TLS peer whose certificate was not derived from
// this cluster's key.
var ErrWrongKey = errors.New("peer certificate does not hold this cluster's key")

// Certificate derives the cluster's API certificate from its key: an
// ed25519 key from HKDF-SHA256(key, info "drift api v1") and a self-signed
// certificate from a fixed template. Ed25519 signatures are deterministic,
// so every holder of the key derives the same certificate, byte for byte,
// and a peer proves it holds the key by presenting it.
func Certificate(k clusterkey.Key) (tls.Certificate, error) {
	return derive(k, certInfo, &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "drift-cluster-" + k.ID()},
		NotBefore:             time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC),
		NotAfter:              time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		SubjectKeyId:          []byte(k.ID()),
		DNSNames:              []string{"drift-cluster-" + k.ID()},
	})
}

// derive makes the self-signed certificate tmpl for an ed25519 key from
// HKDF-SHA256(k, info): the same bytes for every holder of k.
func derive(k clusterkey.Key, info string, tmpl *x509.Certificate) (tls.Certificate, error) {
	seed, err := hkdf.Key(sha256.New, k[:], nil, info, ed25519.SeedSize)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("derive %s key: %w", info, err)
	}
	priv := ed25519.NewKeyFromSeed(seed)
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("derive %s certificate: %w", info, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("derive %s certificate: %w", info, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// pinned returns a VerifyPeerCertificate that accepts exactly cert.
func pinned(cert tls.Certificate) func([][]byte, [][]*x509.Certificate) error {
	want := cert.Certificate[0]
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) != 1 || !bytes.Equal(raw[0], want) {
			return ErrWrongKey
		}
		return nil
	}
}

// ServerTLS is the TLS configuration of the API's TCP port for the
// cluster of key k alone: TLS 1.3 only, and clients must present the
// cluster's certificate or the metrics reader's.
func ServerTLS(k clusterkey.Key) (*tls.Config, error) {
	if _, err := Certificate(k); err != nil {
		return nil, err
	}
	return RingServerTLS(clusterkey.NewRing(clusterkey.Of(k))), nil
}

// RingServerTLS is ServerTLS for the keys of r, which a rekey changes
// while the server runs: a client names the key it holds by the SNI
// ServerName(key) (Remote sets it); the server answers with that key's
// certificate if r accepts the key, else (no SNI, a key no longer
// accepted) with the current key's, which such a client then refuses.
// Either way the client must present the certificate of the key the
// server answered with, or its metrics reader's.
func RingServerTLS(r *clusterkey.Ring) *tls.Config {
	var (
		mu    sync.Mutex
		cache = map[clusterkey.Key]*tls.Config{}
	)
	forKey := func(k clusterkey.Key) (*tls.Config, error) {
		mu.Lock()
		defer mu.Unlock()
		if c, ok := cache[k]; ok {
			return c, nil
		}
		cfg, err := pinnedTLS(k)
		if err != nil {
			return nil, err
		}
		cfg.ClientAuth = tls.RequireAnyClientCert // checked by the pin
		reader, err := MetricsCertificate(k)      // or a metrics reader's, limited by Server.Handler
		if err != nil {
			return nil, err
		}
		cfg.VerifyPeerCertificate = pinnedAny(cfg.Certificates[0], reader)
		cache[k] = cfg
		return cfg, nil
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			for _, k := range r.Accepted() {
				if hello.ServerName == ServerName(k) {
					return forKey(k)
				}
			}
			return forKey(r.Current())
		},
	}
}

// ClientTLS is the TLS configuration for dialling an agent's API: it
// names the key by SNI, presents the cluster's certificate and accepts
// only that certificate from the server.
func ClientTLS(k clusterkey.Key) (*tls.Config, error) {
	cfg, err := pinnedTLS(k)
	if err != nil {
		return nil, err
	}
	cfg.InsecureSkipVerify = true // chain verification is replaced by the pin
	cfg.ServerName = ServerName(k)
	return cfg, nil
}

// certCache keeps the DER of each key's cluster and metrics reader
// certificates: deriving them costs a signature, checking them a compare.
type certCache struct {
	mu sync.Mutex
	m  map[clusterkey.Key][2][]byte
}

func (c *certCache) ders(k clusterkey.Key) (cluster, reader []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if d, ok := c.m[k]; ok {
		return d[0], d[1]
	}
	cc, err := Certificate(k)
	if err != nil {
		return nil, nil
	}
	rc, err := MetricsCertificate(k)
	if err != nil {
		return nil, nil
	}
	if c.m == nil {
		c.m = map[clusterkey.Key][2][]byte{}
	}
	c.m[k] = [2][]byte{cc.Certificate[0], rc.Certificate[0]}
	return cc.Certificate[0], rc.Certificate[0]
}

// accepted reports whether der is the cluster certificate or the metrics
// reader's of a key r accepts, and whether it is a reader's.
func (c *certCache) accepted(r *clusterkey.Ring, der []byte) (ok, reader bool) {
	for _, k := range r.Accepted() {
		cl, rd := c.ders(k)
		switch {
		case cl != nil && bytes.Equal(cl, der):
			return true, false
		case rd != nil && bytes.Equal(rd, der):
			return true, true
		}
	}
	return false, false
}

// pinnedTLS is TLS 1.3 with the cluster's certificate, accepting exactly
// that certificate from the peer.
func pinnedTLS(k clusterkey.Key) (*tls.Config, error) {
	cert, err := Certificate(k)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:            tls.VersionTLS13,
		Certificates:          []tls.Certificate{cert},
		VerifyPeerCertificate: pinned(cert),
	}, nil
}
