package clusterkey

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Cluster is what a node holds of its cluster: the cluster's ID, fixed
// for the cluster's life (mDNS and memberlist name the cluster by it, so
// that nodes mid-rekey still find each other), and the key it uses now.
//
// Its file is the key's hex on the first line and, once the key is no
// longer the cluster's first, "cluster ID" on the second:
//
//	9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//	cluster 3a7bd3e2360a3d29
//
// A file of the key alone names the cluster by the key's own ID.
type Cluster struct {
	ID  string
	Key Key
}

// clusterPrefix starts a key file's cluster line.
const clusterPrefix = "cluster "

// idLen is the length of an ID in hex characters.
const idLen = 16

// ErrBadClusterLine reports a key file whose second line is not
// "cluster ID".
var ErrBadClusterLine = errors.New(`a cluster key file's second line, if any, must be "cluster ID" (16 hex characters), as drift rekey --out writes it`)

// ParseCluster reads a key file's text.
func ParseCluster(text []byte) (Cluster, error) {
	first, rest, _ := bytes.Cut(bytes.TrimSpace(text), []byte("\n"))
	k, err := parseKey(first)
	if err != nil {
		return Cluster{}, err
	}
	c := Cluster{ID: k.ID(), Key: k}
	rest = bytes.TrimSpace(rest)
	if len(rest) == 0 {
		return c, nil
	}
	id, ok := strings.CutPrefix(string(rest), clusterPrefix)
	id = strings.ToLower(strings.TrimSpace(id))
	if _, err := hex.DecodeString(id); !ok || err != nil || len(id) != idLen {
		return Cluster{}, fmt.Errorf("parse cluster key: %q: %w", rest, ErrBadClusterLine)
	}
	c.ID = id
	return c, nil
}

// LoadCluster reads and parses the key file at path.
func LoadCluster(path string) (Cluster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Cluster{}, fmt.Errorf("load cluster key: %w", err)
	}
	c, err := ParseCluster(b)
	if err != nil {
		return Cluster{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Text is c's key file: the key's hex, and the cluster line when the ID
// is not the key's own.
func (c Cluster) Text() string {
	s := c.Key.Hex() + "\n"
	if c.ID != "" && c.ID != c.Key.ID() {
		s += clusterPrefix + c.ID + "\n"
	}
	return s
}

// WriteCluster writes c's key file to path with mode 0600, atomically.
func WriteCluster(path string, c Cluster) error {
	return writeAtomic(path, c.Text())
}

// Of is the cluster whose first key is k.
func Of(k Key) Cluster { return Cluster{ID: k.ID(), Key: k} }
