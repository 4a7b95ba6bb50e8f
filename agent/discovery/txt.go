package discovery

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrMalformedTXT reports a _drift._tcp TXT record drift cannot use.
var ErrMalformedTXT = errors.New("malformed drift TXT record")

// Record is what a node's TXT record says about it.
type Record struct {
	ClusterID      string // id=: the cluster's ID (clusterkey.Key.ID), never the key
	Node           string // node=: the node's name, its memberlist name
	Version        string // v=: drift version (optional)
	APIPort        int    // api=: the agent API's TCP port (optional, 0 if absent)
	MemberlistPort int    // ml=: memberlist's port
}

// TXT returns r as TXT strings, the inverse of ParseTXT.
func (r Record) TXT() []string {
	txt := []string{"id=" + r.ClusterID, "node=" + r.Node, "v=" + r.Version, "ml=" + strconv.Itoa(r.MemberlistPort)}
	if r.APIPort != 0 {
		txt = append(txt, "api="+strconv.Itoa(r.APIPort))
	}
	return txt
}

// ParseTXT reads a node's TXT strings. id, node and ml are required; keys
// it does not know are ignored, so later versions may add some. For a key
// given twice the first value counts.
func ParseTXT(txt []string) (Record, error) {
	var r Record
	seen := map[string]bool{}
	for _, s := range txt {
		k, v, ok := strings.Cut(s, "=")
		if !ok || seen[k] {
			continue
		}
		seen[k] = true
		var err error
		switch k {
		case "id":
			r.ClusterID, err = token(k, v, 64)
		case "node":
			r.Node, err = token(k, v, 63)
		case "v":
			if v != "" {
				r.Version, err = token(k, v, 64)
			}
		case "api":
			r.APIPort, err = port(k, v)
		case "ml":
			r.MemberlistPort, err = port(k, v)
		}
		if err != nil {
			return Record{}, err
		}
	}
	for _, k := range []string{"id", "node", "ml"} {
		if !seen[k] {
			return Record{}, fmt.Errorf("%w: no %s=", ErrMalformedTXT, k)
		}
	}
	return r, nil
}

// token checks that v is 1 to max printable ASCII characters with no spaces.
func token(k, v string, max int) (string, error) {
	if v == "" || len(v) > max {
		return "", fmt.Errorf("%w: %s= must have 1 to %d characters", ErrMalformedTXT, k, max)
	}
	for i := 0; i < len(v); i++ {
		if v[i] <= ' ' || v[i] > '~' {
			return "", fmt.Errorf("%w: %s=%q has a character that is not printable ASCII", ErrMalformedTXT, k, v)
		}
	}
	return v, nil
}

func port(k, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%w: %s=%q is not a port", ErrMalformedTXT, k, v)
	}
	return n, nil
}
