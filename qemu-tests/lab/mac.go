package lab

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
)

// labID is a short, stable hash of a lab's state directory. It names the
// lab's network namespace and picks the lab's MAC address byte, so that two
// labs on one host (two state directories) never collide and a lab started
// again in the same directory gets the same names.
func labID(stateDir string) string {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		abs = stateDir
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return hex.EncodeToString(sum[:4])
}

// NetNSName returns the network namespace name of the lab in stateDir.
func NetNSName(stateDir string) string { return "drift-lab-" + labID(stateDir) }

// NodeMAC returns the MAC address of node n (1-based) in the lab whose ID is
// id: 52:54:00:d1:LL:NN, where LL comes from the lab ID and NN is n. 52:54:00
// is QEMU's locally administered prefix; d1 marks drift labs. The guest's
// hostname is drift-d1LLNN.
func NodeMAC(id string, n int) string {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) == 0 {
		b = []byte{0}
	}
	return fmt.Sprintf("52:54:00:d1:%02x:%02x", b[0], byte(n))
}

// NodeHostname returns the hostname driftd derives from a MAC address:
// drift- and the last three bytes in hex.
func NodeHostname(mac string) string {
	hw := ""
	for _, c := range mac {
		if c != ':' {
			hw += string(c)
		}
	}
	if len(hw) < 6 {
		return "drift-" + hw
	}
	return "drift-" + hw[len(hw)-6:]
}

// LabID is the ID of the lab in stateDir, for NodeMAC: a test that
// must name a node's MAC before the lab starts (a MAC list on the head's
// command line) picks the state directory first.
func LabID(stateDir string) string { return labID(stateDir) }
