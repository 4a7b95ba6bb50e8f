package lab

import (
	"fmt"
	"os"
	"path/filepath"
)

// AttachDisk adds the raw disk image path to node n as a virtio disk
// (the guest's next /dev/vdX), effective from the node's next StartNode:
// stop the node, attach, start it. The disk stays attached across later
// restarts, like a disk in a machine.
func (l *Lab) AttachDisk(n int, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("attach disk to node %d: %w", n, err)
	}
	if _, err := os.Stat(abs); err != nil {
		return fmt.Errorf("attach disk to node %d: %w", n, err)
	}
	if _, err := l.node(n); err != nil {
		return err
	}
	l.mu.Lock()
	ns := &l.st.Nodes[n-1]
	ns.Argv = append(ns.Argv, "-drive", "file="+abs+",format=raw,if=virtio")
	argv := ns.Argv
	l.mu.Unlock()
	if err := os.WriteFile(l.nodePath(n, ".cmdline"), []byte(reproScript(l.st.NetNS, n, shellQuote(argv))), 0o644); err != nil {
		return fmt.Errorf("attach disk to node %d: %w", n, err)
	}
	return writeState(l.dir, l.st)
}
