package lab

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stateName is the file in the state directory that describes a running lab.
const stateName = "lab.json"

// ErrNoLab means no lab state exists in the directory.
var ErrNoLab = errors.New("no lab is running")

// state is what a lab records about itself so that another process
// (drift-lab status, exec, down) can find its VMs.
type state struct {
	NetNS    string      `json:"netns"`
	Bridge   string      `json:"bridge"`
	ImageDir string      `json:"image_dir"`
	Version  string      `json:"version"` // image version
	Boot     BootMode    `json:"boot"`
	NIC      NIC         `json:"nic"`
	Accel    Accel       `json:"accel"`
	Started  time.Time   `json:"started"`
	Nodes    []nodeState `json:"nodes"`

	// What a node added later (drift-lab add) boots with.
	Image      Image    `json:"image"`
	MemoryMB   int      `json:"memory_mb"`
	KernelArgs []string `json:"kernel_args,omitempty"`
	NoHead     bool     `json:"no_head,omitempty"`
	QEMU       string   `json:"qemu"`
	OVMFDir    string   `json:"ovmf_dir"`
}

type nodeState struct {
	Num         int       `json:"num"`
	Role        string    `json:"role"`
	PID         int       `json:"pid"` // 0 while stopped (StopNode)
	MAC         string    `json:"mac"`
	Tap         string    `json:"tap"`
	Argv        []string  `json:"argv"` // full command, starting with ip netns exec
	ConsoleSock string    `json:"console_sock"`
	ConsoleLog  string    `json:"console_log"`
	LabSock     string    `json:"lab_sock"`  // the lab port broker's, for clients (labport.Run)
	PortSock    string    `json:"port_sock"` // QEMU's end of the lab port, which the broker holds
	QMPSock     string    `json:"qmp_sock"`
	QEMULog     string    `json:"qemu_log"`
	PIDFile     string    `json:"pid_file"`
	Started     time.Time `json:"started"`
}

func writeState(dir string, st *state) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	p := filepath.Join(dir, stateName)
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("write lab state: %w", err)
	}
	return nil
}

func readState(dir string) (*state, error) {
	b, err := os.ReadFile(filepath.Join(dir, stateName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s: start one with drift-lab up", ErrNoLab, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("read lab state: %w", err)
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("read lab state %s: %w", filepath.Join(dir, stateName), err)
	}
	return &st, nil
}
