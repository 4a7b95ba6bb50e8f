package api

import (
	"context"
	"net/http"
	"time"
)

// FrameCheckpoint goes from a stint to its home when a checkpoint of the
// job is complete; payload: JSON CheckpointInfo. Every byte of output the
// checkpoint counts was sent before it.
const FrameCheckpoint byte = 'c'

// CheckpointInfo describes a complete checkpoint of a job.
type CheckpointInfo struct {
	Dir   string    `json:"dir"`   // the published checkpoint, on the shared storage
	Epoch int       `json:"epoch"` // the stint that took it
	Seq   int       `json:"seq"`   // its number within that stint
	At    time.Time `json:"at"`    // when the job was frozen for it
	// Out and Err are the bytes of stdout and stderr that the stint had
	// written when the job was frozen for it: the job restored from it
	// writes on from there.
	Out     int64         `json:"out"`
	Err     int64         `json:"err"`
	Stdio   [3]uint64     `json:"stdio"`   // the job's stdio pipe inodes when dumped
	Bytes   int64         `json:"bytes"`   // the images' size
	Freeze  time.Duration `json:"freeze"`  // how long the job was frozen for it
	Publish time.Duration `json:"publish"` // how long copying it to the shared storage took, the job running
	// Stdin is what the job had not read of its stdin when frozen, and
	// StdinEOF whether its stdin had ended.
	Stdin    []byte `json:"stdin,omitempty"`
	StdinEOF bool   `json:"stdin_eof,omitempty"`
}

// CheckpointCost is the share of a job's time that its checkpoints may
// take by default: the interval between two grows with what the last one
// cost.
const CheckpointCost = 0.05

// DefaultCheckpointEvery is the shortest time between two checkpoints of
// a job that does not say.
const DefaultCheckpointEvery = 30 * time.Second

// CheckpointDir is where the checkpoints of jobs are kept, under SharedRoot.
const CheckpointDir = ".drift/jobs"

// AbandonRequest tells the node a job ran on that its home has started
// the job again elsewhere, as stint Epoch or later: any copy of an
// earlier stint there must die (POST /v1/jobs/ID/abandon).
type AbandonRequest struct {
	Before int `json:"before"` // stints numbered below this are abandoned
}

// AbandonResult says whether a copy was running there, now killed.
type AbandonResult struct {
	Killed bool `json:"killed"`
}

// Abandon asks a node to kill what it still runs of job id before the
// stint req.Before; it answers once no such copy runs there.
func (c *Client) Abandon(ctx context.Context, id string, req AbandonRequest) (AbandonResult, error) {
	var res AbandonResult
	err := c.Call(ctx, http.MethodPost, jobPath(id, "/abandon"), req, &res)
	return res, err
}
