// Package storage is the cluster's shared storage: one directory that every
// node sees at /cluster. The head exports a directory over 9P2000.L
// (Server, with hugelgupf/p9's server and its own file implementation) to
// the cluster's members only; every other node mounts it with the kernel's
// v9fs client (the head binds the exported directory at /cluster itself,
// KindLocal) and keeps it mounted (Mounter): it retries while
// the server is unreachable and mounts again when a mount goes dead, e.g.
// after the head rebooted. A site with a NAS names an external NFS or 9P
// server instead (drift.storage=), and then no node exports. The head's
// backing store is a partition labelled DRIFT-DATA when it has one
// (FindLabel, Backing), so the data survives reboots, else a tmpfs.
// driftd runs it; the API and `drift storage` report its Status.
package storage

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

// Defaults.
const (
	DefaultPort  = 5640                  // the head's 9P server, TCP
	MountPoint   = api.SharedRoot        // where every node mounts the shared storage
	DataDir      = "/var/lib/drift/data" // where the head mounts its backing store
	DataLabel    = "DRIFT-DATA"          // file system label of the head's persistent backing store
	DefaultMsize = 256 << 10             // 9P message size: the kernel's TCP transport allows up to 1 MiB
)

// Kind is a shared storage protocol.
type Kind string

const (
	Kind9P  Kind = "9p"
	KindNFS Kind = "nfs"
	// KindLocal is the head's own export, which the head binds at
	// /cluster instead of mounting it through its own 9P server: the
	// same files, without a 9P round trip over loopback for each of its
	// own operations (its queue looks, its tasks' outputs, its jobs'
	// checkpoints), which cost the node that serves every other node.
	KindLocal Kind = "local"
)

// Source is where shared storage is mounted from.
type Source struct {
	Kind   Kind
	Host   netip.Addr // the server's IPv4 address (the kernel clients take no names without helpers)
	Port   int        // 9p: the server's TCP port; nfs: 0 (2049)
	Export string     // nfs: the exported path, e.g. /srv/drift
	Dir    string     // local: the exported directory
}

// String is the source as drift.storage= writes it.
func (s Source) String() string {
	switch s.Kind {
	case Kind9P:
		return "9p://" + net.JoinHostPort(s.Host.String(), strconv.Itoa(s.Port))
	case KindNFS:
		if s.Port != 0 {
			return "nfs://" + net.JoinHostPort(s.Host.String(), strconv.Itoa(s.Port)) + s.Export
		}
		return "nfs://" + s.Host.String() + s.Export
	case KindLocal:
		return s.Dir
	}
	return ""
}

// ErrBadSource reports a drift.storage= value drift cannot mount.
var ErrBadSource = errors.New("want 9p://IP:PORT or nfs://IP/EXPORT")

// ParseSource reads a drift.storage= value: 9p://IP[:PORT] (port 5640 by
// default) or nfs://IP[:PORT]/EXPORT. The host must be an IPv4 address:
// the node has no name service for it at boot.
func ParseSource(s string) (Source, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return Source{}, fmt.Errorf("storage source %q: %w", s, ErrBadSource)
	}
	hostport, export, _ := strings.Cut(rest, "/")
	src := Source{Kind: Kind(scheme)}
	host, port := hostport, ""
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		host, port = h, p
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Is4() {
		return Source{}, fmt.Errorf("storage source %q: host %q is not an IPv4 address: %w", s, host, ErrBadSource)
	}
	src.Host = addr
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return Source{}, fmt.Errorf("storage source %q: port %q: %w", s, port, ErrBadSource)
		}
		src.Port = n
	}
	switch src.Kind {
	case Kind9P:
		if export != "" {
			return Source{}, fmt.Errorf("storage source %q: a 9p source has no path (the server exports one directory): %w", s, ErrBadSource)
		}
		if src.Port == 0 {
			src.Port = DefaultPort
		}
	case KindNFS:
		if export == "" {
			return Source{}, fmt.Errorf("storage source %q: no export path: %w", s, ErrBadSource)
		}
		src.Export = "/" + export
	default:
		return Source{}, fmt.Errorf("storage source %q: unknown scheme %q: %w", s, scheme, ErrBadSource)
	}
	return src, nil
}

// mountArgs is what mount(2) takes for s: source, file system type,
// options and flags. Without the mount.nfs helper, the kernel's NFS client needs
// the server's address as an option; NFSv4 needs no mountd, rpcbind or
// lock manager, so it goes through a NAS's firewall and needs no nolock.
func (s Source) mountArgs() (src, fstype, data string, flags uintptr) {
	switch s.Kind {
	case Kind9P:
		// cache=mmap: read(2) and write(2) still go to the server, so
		// what one node writes the next read on another node sees; only
		// mapped pages are cached, which is what lets programs map files
		// shared and writable (cache=none allows read-only mappings).
		return s.Host.String(), "9p", fmt.Sprintf("trans=tcp,port=%d,version=9p2000.L,msize=%d,cache=mmap", s.Port, DefaultMsize), 0
	case KindNFS:
		data = "vers=4.1,proto=tcp,addr=" + s.Host.String() + ",hard,timeo=100,retrans=3"
		if s.Port != 0 {
			data += ",port=" + strconv.Itoa(s.Port)
		}
		return s.Host.String() + ":" + s.Export, "nfs4", data, 0
	case KindLocal:
		// With MS_BIND the kernel ignores the type: "bind" is for drift storage.
		return s.Dir, "bind", "", unix.MS_BIND
	}
	return "", "", "", 0
}
