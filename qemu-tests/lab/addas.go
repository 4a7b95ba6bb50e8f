package lab

import (
	"context"
	"fmt"
)

// AddAs boots one more worker on the running lab's network that starts
// the way boot says, with a NIC of model nic (the boot matrix gives each
// cell its own firmware, medium and NIC), and returns its number. Boot
// modes other than BootKernel boot the image's ISO, whose menu starts a
// worker. It does not wait for the node to be ready.
func (l *Lab) AddAs(ctx context.Context, boot BootMode, nic NIC) (int, error) {
	if nic == "" {
		nic = NICVirtio
	}
	cfg := Config{Image: l.st.Image, Boot: boot, NIC: nic, OVMFDir: l.st.OVMFDir}
	if cfg.OVMFDir == "" {
		cfg.OVMFDir = ovmfDir(cfg)
	}
	if err := checkImage(cfg); err != nil {
		return 0, fmt.Errorf("add %s node with %s: %w", boot, nic, err)
	}
	l.mu.Lock()
	n := len(l.st.Nodes) + 1
	if l.st.OVMFDir == "" {
		l.st.OVMFDir = cfg.OVMFDir
	}
	l.mu.Unlock()
	if p := l.nodePath(n, ".console.sock"); len(p) > maxSockPath {
		return 0, fmt.Errorf("add node %d: socket path %s is too long", n, p)
	}
	for _, c := range tapCommands(l.st.NetNS, n) {
		if err := ip(ctx, c...); err != nil {
			return 0, fmt.Errorf("add node %d: %w", n, err)
		}
	}
	if err := l.newNodeAs(ctx, n, nil, boot, nic); err != nil {
		return 0, fmt.Errorf("add node %d: %w", n, err)
	}
	return n, nil
}
