package api

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/clusterkey"
)

// StorageStatus is one node's shared storage: GET /v1/storage/local
// answers it for the node asked, GET /v1/storage lists every member's.
type StorageStatus struct {
	Node     string         `json:"node"`
	Addr     string         `json:"addr"`
	Role     string         `json:"role,omitempty"`
	External string         `json:"external,omitempty"` // drift.storage=: the source every node mounts; "": the head's export
	Mount    MountStatus    `json:"mount"`
	Export   *StorageExport `json:"export,omitempty"` // the head: what it exports
	Error    string         `json:"error,omitempty"`  // why this node's status is missing (GET /v1/storage)
}

// StorageExport is what the head exports and where the files live.
type StorageExport struct {
	Backing
	Port  int    `json:"port"`
	Total uint64 `json:"total"` // bytes of the backing store
	Free  uint64 `json:"free"`  // bytes available
}

// storageTimeout bounds how long GET /v1/storage waits for each node.
const storageTimeout = 5 * time.Second

// StorageRoutes are the shared storage endpoints, for Server.Routes:
// GET /v1/storage/local answers local() (this node's storage); GET
// /v1/storage asks every member that is not dead for its own, over mutual
// TLS with key, in parallel, and lists a node that does not answer with
// the error. Asking each node, rather than gossiping the status in
// membership metadata, keeps the metadata small and the answer fresh, and
// costs nothing until someone asks.
func StorageRoutes(cl Cluster, key clusterkey.Source, local func() StorageStatus) map[string]http.Handler {
	sr := &storageRoutes{cl: cl, key: key, local: local}
	return map[string]http.Handler{
		"GET /v1/storage/local": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { WriteJSON(w, local()) }),
		"GET /v1/storage":       http.HandlerFunc(sr.all),
	}
}

type storageRoutes struct {
	cl    Cluster
	key   clusterkey.Source // the key to dial with now
	local func() StorageStatus
}

func (s *storageRoutes) all(w http.ResponseWriter, r *http.Request) {
	ms := s.cl.Nodes(time.Now())
	out := make([]StorageStatus, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		out[i] = StorageStatus{Node: m.Name, Addr: m.Addr, Role: m.Role}
		switch {
		case m.Self:
			st := s.local()
			st.Node, st.Addr, st.Role = m.Name, m.Addr, m.Role
			out[i] = st
		case m.State == NodeDead:
			out[i].Error = "node is dead"
		default:
			wg.Add(1)
			go func() {
				defer wg.Done()
				st, err := s.remote(r.Context(), m)
				if err != nil {
					out[i].Error = err.Error()
					return
				}
				st.Node, st.Addr, st.Role = m.Name, m.Addr, m.Role
				out[i] = st
			}()
		}
	}
	wg.Wait()
	// The head first, then by name.
	slices.SortFunc(out, func(a, b StorageStatus) int {
		if ah, bh := a.Role == "head", b.Role == "head"; ah != bh {
			if ah {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Node, b.Node)
	})
	WriteJSON(w, out)
}

func (s *storageRoutes) remote(ctx context.Context, m Node) (StorageStatus, error) {
	port := m.APIPort
	if port == 0 {
		port = DefaultPort
	}
	c, err := Remote(net.JoinHostPort(m.Addr, strconv.Itoa(port)), s.key.Current())
	if err != nil {
		return StorageStatus{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, storageTimeout)
	defer cancel()
	return c.StorageLocal(ctx)
}

// Storage lists every member's shared storage, as the agent asked sees it.
func (c *Client) Storage(ctx context.Context) ([]StorageStatus, error) {
	var out []StorageStatus
	return out, c.get(ctx, "/v1/storage", &out)
}

// StorageLocal returns the shared storage of the node the client talks to.
func (c *Client) StorageLocal(ctx context.Context) (StorageStatus, error) {
	var out StorageStatus
	return out, c.get(ctx, "/v1/storage/local", &out)
}

// MountStatus is what a node has mounted at its mount point.
type MountStatus struct {
	Target  string    `json:"target"`
	Source  string    `json:"source,omitempty"`  // e.g. 9p://10.77.0.1:5640; "" when nothing is mounted
	FSType  string    `json:"fs_type,omitempty"` // 9p, nfs4
	Mounted bool      `json:"mounted"`
	Healthy bool      `json:"healthy"`          // the last health check passed
	Since   time.Time `json:"since,omitzero"`   // when it was mounted, or when it went down
	Checked time.Time `json:"checked,omitzero"` // the last health check
	Error   string    `json:"error,omitempty"`  // why it is not mounted or not healthy
	Total   uint64    `json:"total,omitempty"`  // bytes of the storage, from statfs
	Free    uint64    `json:"free,omitempty"`   // bytes available
}

// Backing is where the head keeps the exported files.
type Backing struct {
	Dir        string `json:"dir"`
	Device     string `json:"device,omitempty"` // e.g. /dev/vdb; "" for a tmpfs
	FSType     string `json:"fs_type"`          // ext4, xfs, vfat or tmpfs
	Label      string `json:"label,omitempty"`
	Persistent bool   `json:"persistent"`      // false: the data is lost at power-off
	Error      string `json:"error,omitempty"` // why a DRIFT-DATA partition is not used
}
