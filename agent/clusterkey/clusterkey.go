// Package clusterkey is the drift cluster key: the 256-bit secret that every
// node of one cluster shares. drift-image generates it and bakes it into the
// image; the agent uses it to encrypt membership traffic and authenticate
// peers. A cluster is named by its ID, the hash of its first key (safe to
// show); drift rekey gives the cluster a new key but keeps its ID, which a
// key file then carries on a second line (cluster.go), and a running agent
// holds its keys in a Ring while a rekey moves through the cluster.
package clusterkey

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/driftcluster/drift/agent/internal/atomicfile"
)

// Size is the length of a key in bytes.
const Size = 32

// idDomain separates the cluster ID hash from any other use of the key.
const idDomain = "drift cluster id v1\x00"

// ErrMalformed reports key text that is not 64 hex characters.
var ErrMalformed = errors.New("a cluster key file must contain exactly 64 hex characters (32 bytes); make one with `head -c32 /dev/urandom | xxd -p -c64`")

// Key is a cluster key.
type Key [Size]byte

// Generate returns a new random key from crypto/rand.
func Generate() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generate cluster key: %w", err)
	}
	return k, nil
}

// Parse reads a key from its hex text. Surrounding whitespace (such as a
// trailing newline) is ignored, and so is the "cluster ID" line a key
// file written after a rekey carries (ParseCluster reads it).
func Parse(text []byte) (Key, error) {
	c, err := ParseCluster(text)
	return c.Key, err
}

// parseKey reads the key's line.
func parseKey(text []byte) (Key, error) {
	t := bytes.TrimSpace(text)
	if len(t) != hex.EncodedLen(Size) {
		return Key{}, fmt.Errorf("parse cluster key: got %d characters: %w", len(t), ErrMalformed)
	}
	var k Key
	if _, err := hex.Decode(k[:], t); err != nil {
		return Key{}, fmt.Errorf("parse cluster key: %w", ErrMalformed)
	}
	return k, nil
}

// LoadFile reads and parses the key file at path.
func LoadFile(path string) (Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Key{}, fmt.Errorf("load cluster key: %w", err)
	}
	k, err := Parse(b)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// WriteFile writes k as hex to path with mode 0600. It writes a temporary
// file beside path and renames it, so a reader never sees half a key.
func WriteFile(path string, k Key) error {
	return writeAtomic(path, k.Hex()+"\n")
}

// writeAtomic writes text to path with mode 0600, whole or not at all.
func writeAtomic(path, text string) error {
	if err := atomicfile.Write(path, []byte(text), 0o600); err != nil {
		return fmt.Errorf("cluster key: %w", err)
	}
	return nil
}

// Hex returns the key as 64 lowercase hex characters, the key file format.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// ID names the cluster without revealing the key: the first 16 hex
// characters of a domain-separated SHA-256 of the key.
func (k Key) ID() string {
	h := sha256.New()
	h.Write([]byte(idDomain))
	h.Write(k[:])
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// String returns the ID, so that printing a key by mistake never leaks it.
func (k Key) String() string { return "clusterkey:" + k.ID() }
