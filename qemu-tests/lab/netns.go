package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// BridgeName is the bridge inside a lab's namespace that every node's tap
// is a port of. Host-side tools run in the namespace (a DHCP server, an NFS
// server) reach the nodes by attaching to it.
const BridgeName = "br0"

// The bridge's own addresses, so that host-side tools run in the lab's
// namespace (drift-lab run) reach the nodes: one on the head's DHCP range
// (the head's server probes before it offers, so it never hands this one
// out) and one link-local, for labs without a head. 169.254.0.0/24 is
// reserved by RFC 3927, so no node picks HostLinkLocal for itself.
const (
	HostAddr      = "10.77.0.254"
	HostLinkLocal = "169.254.0.254"
)

// tapName is node n's tap device inside the lab's namespace.
func tapName(n int) string { return "tap" + strconv.Itoa(n) }

// ErrNoIP means the ip tool (iproute2) is missing.
var ErrNoIP = errors.New("ip not found: install it with apt-get install iproute2")

// ip runs the ip tool with args.
func ip(ctx context.Context, args ...string) error {
	path, err := exec.LookPath("ip")
	if err != nil {
		return ErrNoIP
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// netnsExists reports whether the named network namespace exists.
func netnsExists(name string) bool {
	_, err := os.Stat(filepath.Join("/run/netns", name))
	return err == nil
}

// networkCommands returns the ip commands (arguments after "ip") that make
// the namespace ns with lo up, a bridge holding HostAddr/24 and
// HostLinkLocal/16, and one tap per node number in taps, all up. Nothing in
// it is connected to the host's network.
func networkCommands(ns string, taps []int) [][]string {
	cmds := [][]string{
		{"netns", "add", ns},
		{"-n", ns, "link", "set", "lo", "up"},
		{"-n", ns, "link", "add", BridgeName, "type", "bridge", "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0"},
		{"-n", ns, "addr", "add", HostAddr + "/24", "dev", BridgeName},
		{"-n", ns, "addr", "add", HostLinkLocal + "/16", "dev", BridgeName},
		{"-n", ns, "link", "set", BridgeName, "up"},
	}
	for _, n := range taps {
		cmds = append(cmds, tapCommands(ns, n)...)
	}
	return cmds
}

// tapCommands returns the ip commands that add node n's tap to the bridge.
func tapCommands(ns string, n int) [][]string {
	return [][]string{
		{"-n", ns, "tuntap", "add", "dev", tapName(n), "mode", "tap"},
		{"-n", ns, "link", "set", tapName(n), "master", BridgeName, "up"},
	}
}

// createNetwork runs networkCommands for nodes 1 to nodes.
func createNetwork(ctx context.Context, ns string, nodes int) error {
	taps := make([]int, nodes)
	for i := range taps {
		taps[i] = i + 1
	}
	for _, c := range networkCommands(ns, taps) {
		if err := ip(ctx, c...); err != nil {
			return fmt.Errorf("create network namespace %s: %w", ns, err)
		}
	}
	return nil
}

// netnsPIDs lists the processes running inside the namespace ns.
func netnsPIDs(ctx context.Context, ns string) []int {
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// deleteNetwork kills what still runs inside the lab's namespace (only the
// lab puts processes there) and deletes it, which removes its bridge and
// taps. A missing namespace is not an error.
func deleteNetwork(ctx context.Context, ns string) error {
	if !netnsExists(ns) {
		return nil
	}
	pids := netnsPIDs(ctx, ns)
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	for _, p := range pids {
		waitGone(ctx, p, 5*time.Second)
	}
	if err := ip(ctx, "netns", "del", ns); err != nil && netnsExists(ns) {
		return fmt.Errorf("delete network namespace %s: %w", ns, err)
	}
	return nil
}
