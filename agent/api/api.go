// Package api is the drift agent's API: the wire types that cross it
// (nodes, jobs, migrations, modes, storage, netboot, files), the HTTP
// server the agent runs on a unix socket (for the node's own CLI) and on
// TCP (for other machines, mutual TLS with a certificate derived from the
// cluster key), and the Client, with one typed method per endpoint, that
// the drift CLI and the agents use to reach either. It is a leaf: it
// imports nothing of the agent but clusterkey, so the CLI links none of
// the agent's internals (layout_test.go keeps it so).
package api

import "time"

// Defaults for where the agent serves its API.
const (
	DefaultSocket = "/run/drift/api.sock"
	DefaultPort   = 7947
)

// A member's State, as Node.State and membership spell it.
const (
	NodeAlive   = "alive"
	NodeSuspect = "suspect" // a member's probes failed; not yet declared dead
	NodeDead    = "dead"    // failed or left
)

// Node is one member of the cluster, as GET /v1/nodes lists it.
type Node struct {
	Name          string    `json:"name"`
	Addr          string    `json:"addr"`
	Port          int       `json:"port"` // memberlist port
	State         string    `json:"state"`
	StateSince    time.Time `json:"state_since"`
	Self          bool      `json:"self,omitempty"` // the node that answered
	Role          string    `json:"role"`
	Version       string    `json:"version"`
	CPUs          int       `json:"cpus"`
	CPUModel      string    `json:"cpu_model"`
	MHz           int       `json:"mhz"`
	Speed         float64   `json:"speed"` // relative speed of one core; 1.0 is the reference machine
	Load1         float64   `json:"load1"`
	Runnable      int       `json:"runnable"`
	MemTotal      uint64    `json:"mem_total"` // bytes
	MemFree       uint64    `json:"mem_free"`  // bytes
	Jobs          int       `json:"jobs"`
	Blocked       bool      `json:"blocked,omitempty"`  // takes no new jobs or migrations
	Draining      bool      `json:"draining,omitempty"` // sends its jobs away
	BootTime      time.Time `json:"boot_time,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	APIPort       int       `json:"api_port,omitempty"`
	MetaError     string    `json:"meta_error,omitempty"` // why the node's metadata is missing
}

// Status is GET /v1/status: the answering node in detail.
type Status struct {
	Node      Node   `json:"node"`
	ClusterID string `json:"cluster_id"` // the cluster's ID: its first key's, kept across rekeys
	KeyID     string `json:"key_id"`     // the ID of the key the node uses now (drift rekey changes it)
	Alive     int    `json:"alive"`      // members alive, this node included
	Suspect   int    `json:"suspect"`
	Dead      int    `json:"dead"`
	Go        string `json:"go"`
}
