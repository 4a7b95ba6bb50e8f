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

// ServerTLS is the TLS configuration of the API's TCP port: TLS 1.3 only,
// and clients must present the cluster's certificate or the metrics
// reader's.
func ServerTLS(k clusterkey.Key) (*tls.Config, error) {
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
	return cfg, nil
}

// ClientTLS is the TLS configuration for dialling an agent's API: it
// presents the cluster's certificate and accepts only that certificate
// from the server.
func ClientTLS(k clusterkey.Key) (*tls.Config, error) {
	cfg, err := pinnedTLS(k)
	if err != nil {
		return nil, err
	}
	cfg.InsecureSkipVerify = true // chain verification is replaced by the pin
	return cfg, nil
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
