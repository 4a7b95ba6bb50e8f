package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"
)

// NewIdentity returns a new self-signed certificate and its key (ECDSA
// P-256): the head's on its enrolment port, a machine's as its key pair.
// Nobody checks it against a CA: the head's is pinned by its fingerprint,
// a machine's is known by its public key.
func NewIdentity(name string) (tls.Certificate, error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrolment identity: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrolment identity: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.AddDate(20, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrolment identity: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("enrolment identity: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, nil
}

// Fingerprint is the SHA-256 of a certificate's DER, in hex: what
// drift.enroll_fp carries.
func Fingerprint(c tls.Certificate) string {
	if len(c.Certificate) == 0 {
		return ""
	}
	return fingerprint(c.Certificate[0])
}

func fingerprint(der []byte) string {
	h := sha256.Sum256(der)
	return hex.EncodeToString(h[:])
}

// pubKeyID is the SHA-256 of a certificate's public key, in hex.
func pubKeyID(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

// ErrWrongHead reports a head whose certificate is not the one the boot
// script named.
var ErrWrongHead = errors.New("the head's enrolment certificate is not the one this machine's boot script names (drift.enroll_fp): another machine may be answering for the head, or the head was restarted without its DRIFT-DATA partition; boot this machine from the network again")

// pinned verifies that the peer's certificate has fingerprint fp.
func pinned(fp string) func(raw [][]byte, _ [][]*x509.Certificate) error {
	return func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || subtle.ConstantTimeCompare([]byte(fingerprint(raw[0])), []byte(fp)) != 1 {
			return ErrWrongHead
		}
		return nil
	}
}

// LoadOrCreateIdentity reads the head's certificate and key from dir
// (identity.pem), or makes them and writes them there (mode 0600), so
// that the fingerprint in the boot script survives a restart.
func LoadOrCreateIdentity(dir, name string) (tls.Certificate, error) {
	p := filepath.Join(dir, "identity.pem")
	if b, err := os.ReadFile(p); err == nil {
		c, err := tls.X509KeyPair(b, b)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("enrolment identity %s: %w (remove it to make a new one; machines booted before must boot again)", p, err)
		}
		return c, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return tls.Certificate{}, fmt.Errorf("enrolment identity: %w", err)
	}
	c, err := NewIdentity(name)
	if err != nil {
		return c, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return c, fmt.Errorf("enrolment identity: %w", err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	b = append(b, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	if err := writeFileAtomic(p, b); err != nil {
		return c, fmt.Errorf("enrolment identity: %w", err)
	}
	return c, nil
}

// writeFileAtomic writes b to path (mode 0600) through a temporary file
// beside it, so a crash leaves the old file or the new one.
func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
