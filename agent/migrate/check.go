//go:build linux

package migrate

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/driftcluster/drift/agent/api"
	"golang.org/x/sys/unix"
)

// ImageDirs hold the files of the node image: identical on every node, so
// a job may keep them open read-only and map them (binaries, libraries,
// configuration) and still move.
var ImageDirs = []string{"/bin", "/bbin", "/sbin", "/lib", "/lib64", "/usr", "/etc"}

// kernelDirs hold kernel interface files present on every node, which a
// job may keep open read-only: Go 1.25+ programs keep their cgroup's CPU
// limit files (cpu.cfs_quota_us, cpu.max) open for GOMAXPROCS.
var kernelDirs = []string{"/sys/fs/cgroup"}

// movableDevices are the character devices CRIU reopens by path on the
// target, where they are the same.
var movableDevices = []string{"/dev/null", "/dev/zero", "/dev/random", "/dev/urandom"}

// movableAnon are the anonymous-inode files CRIU 3.17 dumps and restores.
var movableAnon = []string{"[eventfd]", "[eventpoll]", "[signalfd]", "[timerfd]"}

// stayFix is the fix when nothing short of not moving helps.
const stayFix = "run the job with --stay"

// Check says whether the process tree rooted at pid can be checkpointed
// and restored on another node now, without freezing it. It reads
// /proc/PID/task/*/children recursively and each process's file
// descriptors, memory mappings and working directory. sharedRoot is where
// the cluster's shared storage is mounted ("": api.SharedRoot); allowedPipes
// are the inodes of pipes the job agent reconnects on the target (the
// job's stdio). An empty result means the job can move.
func Check(pid int, sharedRoot string, allowedPipes []uint64) ([]Reason, error) {
	if sharedRoot == "" {
		sharedRoot = api.SharedRoot
	}
	pids, err := tree(pid)
	if err != nil {
		return nil, fmt.Errorf("check job %d: %w", pid, err)
	}
	c := checker{shared: filepath.Clean(sharedRoot), pipes: map[uint64]*pipeUse{}, unix: map[uint64]unixUse{}}
	for _, p := range pids {
		if err := c.process(p); err != nil {
			if (errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH)) && p != pid {
				continue // exited meanwhile (a shell's short-lived commands do)
			}
			return nil, fmt.Errorf("check job %d: %w", pid, err)
		}
	}
	c.checkPipes(pid, allowedPipes)
	c.checkUnix()
	return c.reasons, nil
}

type pipeUse struct {
	pid, fd     int
	read, write bool
}

type unixUse struct{ pid, fd int }

type checker struct {
	shared  string
	reasons []Reason
	pipes   map[uint64]*pipeUse // pipe inode -> first use and ends held in the tree
	unix    map[uint64]unixUse  // unix socket inode -> first use
}

func (c *checker) add(pid int, what, why, fix string) {
	c.reasons = append(c.reasons, Reason{PID: pid, What: what, Why: why, Fix: fix})
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

func (c *checker) inImage(path string) bool {
	return slices.ContainsFunc(ImageDirs, func(d string) bool { return under(path, d) })
}

func (c *checker) process(pid int) error {
	dir := filepath.Join(procRoot, strconv.Itoa(pid))
	if cwd, err := os.Readlink(filepath.Join(dir, "cwd")); err == nil {
		switch {
		case cwd != "/" && !under(cwd, c.shared) && !c.inImage(cwd):
			c.add(pid, "working directory "+cwd, "a directory outside "+c.shared+" is not on the other node",
				"start the job in a directory under "+c.shared+", or "+stayFix)
		case !sameFile(filepath.Join(dir, "cwd"), cwd):
			// The directory the job is in is not what its path names now:
			// removed, or covered by a mount made after the job started
			// (a job started before /cluster was mounted sits in the
			// empty directory beneath). The target would open the path.
			c.add(pid, "working directory "+cwd, "the job's directory is not the one that path names now (it was removed, or a mount covers it)",
				"start the job again in "+cwd+", or "+stayFix)
		}
	}
	fds, err := os.ReadDir(filepath.Join(dir, "fd"))
	if err != nil {
		return err
	}
	for _, e := range fds {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		c.fd(pid, fd, filepath.Join(dir, "fd", e.Name()))
	}
	return c.maps(pid, filepath.Join(dir, "maps"))
}

// sameFile reports whether paths a and b name the same file (device and
// inode).
func sameFile(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// fdFlags reads the open flags of fd from /proc/PID/fdinfo.
func fdFlags(pid, fd int) int {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "fdinfo", strconv.Itoa(fd)))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "flags:"); ok {
			f, _ := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			return int(f)
		}
	}
	return 0
}

// inode parses "pipe:[123]" or "socket:[123]".
func inode(link, kind string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, kind+":[")
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return n, err == nil
}

func (c *checker) fd(pid, fd int, path string) {
	link, err := os.Readlink(path)
	if err != nil {
		return // closed meanwhile
	}
	what := fmt.Sprintf("%s (fd %d)", link, fd)
	switch {
	case strings.HasPrefix(link, "pipe:"):
		ino, _ := inode(link, "pipe")
		u := c.pipes[ino]
		if u == nil {
			u = &pipeUse{pid: pid, fd: fd}
			c.pipes[ino] = u
		}
		if fdFlags(pid, fd)&syscall.O_ACCMODE == syscall.O_RDONLY {
			u.read = true
		} else {
			u.write = true
		}
	case strings.HasPrefix(link, "socket:"):
		c.socket(pid, fd, path, link)
	case strings.HasPrefix(link, "anon_inode:"):
		kind := strings.TrimPrefix(link, "anon_inode:")
		switch {
		case slices.Contains(movableAnon, kind):
		case kind == "[pidfd]":
			c.add(pid, what, "CRIU cannot checkpoint a pidfd (a handle on a child process, which Go's os/exec keeps while the child runs)",
				"migrate when no child is running; drift's job init refuses pidfd_open, so this program made it some other way (clone with CLONE_PIDFD); or "+stayFix)
		case strings.Contains(kind, "inotify") || strings.Contains(kind, "fanotify"):
			c.add(pid, what, "a file-watch ("+strings.Trim(kind, "[]")+") cannot move: it watches this node's files",
				"close it before migrating, or "+stayFix)
		default:
			c.add(pid, what, "CRIU cannot checkpoint a "+strings.Trim(kind, "[]")+" file",
				"close it before migrating, or "+stayFix)
		}
	case strings.HasPrefix(link, "/"):
		c.file(pid, fd, path, link, what)
	default: // namespace files and the like
		c.add(pid, what, "CRIU cannot move this kind of file to another node", "close it, or "+stayFix)
	}
}

func (c *checker) file(pid, fd int, path, link, what string) {
	if strings.HasSuffix(link, " (deleted)") {
		c.add(pid, what, "a deleted file cannot be reopened on the other node",
			"keep files under "+c.shared+" and do not delete them while open, or "+stayFix)
		return
	}
	st, err := os.Stat(path)
	if err != nil {
		return
	}
	switch mode := st.Mode(); {
	case mode&os.ModeCharDevice != 0:
		if slices.Contains(movableDevices, link) {
			return
		}
		why := "a device is tied to this node"
		if strings.HasPrefix(link, "/dev/pts/") || strings.HasPrefix(link, "/dev/tty") || strings.HasPrefix(link, "/dev/console") {
			why = "a terminal is tied to this node"
		}
		c.add(pid, what, why, "give the job pipes or /dev/null instead (drift run does), or "+stayFix)
	case mode&os.ModeDevice != 0:
		c.add(pid, what, "a block device is tied to this node", stayFix)
	case mode&os.ModeNamedPipe != 0 || mode&os.ModeSocket != 0:
		if !under(link, c.shared) {
			c.add(pid, what, "a named pipe outside "+c.shared+" is not on the other node",
				"create it under "+c.shared+", or "+stayFix)
		}
	default:
		if under(link, c.shared) {
			return
		}
		readOnly := fdFlags(pid, fd)&syscall.O_ACCMODE == syscall.O_RDONLY
		inKernel := slices.ContainsFunc(kernelDirs, func(d string) bool { return under(link, d) })
		if readOnly && (c.inImage(link) || inKernel) {
			return
		}
		c.add(pid, what, "a file outside "+c.shared+" is not on the other node",
			"open it under "+c.shared+", or "+stayFix)
	}
}

func (c *checker) maps(pid int, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// address perms offset dev inode path
		fields := strings.SplitN(sc.Text(), " ", 6)
		if len(fields) < 6 {
			continue
		}
		p := strings.TrimSpace(fields[5])
		if !strings.HasPrefix(p, "/") || seen[p] || strings.HasPrefix(p, "/memfd:") ||
			strings.HasPrefix(p, "/dev/zero") || strings.HasPrefix(p, "/SYSV") || strings.HasPrefix(p, "/anon_hugepage") {
			continue
		}
		seen[p] = true
		what := p + " (mapped)"
		switch {
		case strings.HasSuffix(p, " (deleted)"):
			c.add(pid, what, "a deleted file mapped in memory cannot be reopened on the other node",
				"keep mapped files under "+c.shared+" and do not delete them while mapped, or "+stayFix)
		case under(p, c.shared) || c.inImage(p):
		default:
			c.add(pid, what, "a file mapped in memory from outside "+c.shared+" is not on the other node",
				"map files under "+c.shared+", or "+stayFix)
		}
	}
	return sc.Err()
}

// checkPipes flags pipes whose other end a process outside the job
// holds. A pipe with one end seen in the job is looked for in every
// process of the node: its other end may be closed (a shell reading a
// command substitution whose command has exited), or held by a child the
// job started after its tree was read; neither keeps the job here.
func (c *checker) checkPipes(root int, allowed []uint64) {
	open := map[uint64]*pipeUse{}
	for ino, u := range c.pipes {
		if (u.read && u.write) || slices.Contains(allowed, ino) {
			continue // both ends in the job, or stdio the job agent reconnects
		}
		open[ino] = u
	}
	if len(open) == 0 {
		return
	}
	holders := pipeHolders(open)
	inJob := map[int]bool{}
	if pids, err := tree(root); err == nil {
		for _, p := range pids {
			inJob[p] = true
		}
	}
	for ino, u := range open {
		outside := slices.DeleteFunc(holders[ino], func(p int) bool { return inJob[p] })
		if len(outside) == 0 {
			continue
		}
		c.add(u.pid, fmt.Sprintf("pipe:[%d] (fd %d)", ino, u.fd),
			fmt.Sprintf("a pipe to a process outside the job (%s) cannot follow it", describePID(outside[0])),
			"connect the job to other programs through files under "+c.shared+", or "+stayFix)
	}
}

// pipeHolders lists, for each pipe inode of want, the processes of the
// node that hold it open.
func pipeHolders(want map[uint64]*pipeUse) map[uint64][]int {
	out := map[uint64][]int{}
	procs, _ := os.ReadDir(procRoot)
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		dir := filepath.Join(procRoot, p.Name(), "fd")
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			link, err := os.Readlink(filepath.Join(dir, fd.Name()))
			if err != nil {
				continue
			}
			if ino, ok := inode(link, "pipe"); ok && want[ino] != nil && !slices.Contains(out[ino], pid) {
				out[ino] = append(out[ino], pid)
			}
		}
	}
	return out
}

// describePID names a process: "pid 42 (cat)".
func describePID(pid int) string {
	comm, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "comm"))
	if err != nil {
		return fmt.Sprintf("pid %d", pid)
	}
	return fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm)))
}

func (c *checker) socket(pid, fd int, path, link string) {
	what := fmt.Sprintf("%s (fd %d)", link, fd)
	buf := make([]byte, 64)
	n, err := unix.Getxattr(path, "system.sockprotoname", buf)
	if err != nil {
		c.add(pid, what, "a socket of unknown kind cannot be checked", "close it, or "+stayFix)
		return
	}
	proto := strings.TrimRight(string(buf[:n]), "\x00")
	switch {
	case strings.HasPrefix(proto, "UNIX"): // "UNIX", or "UNIX-STREAM" and the like since Linux 6.x
		ino, _ := inode(link, "socket")
		if _, ok := c.unix[ino]; !ok {
			c.unix[ino] = unixUse{pid: pid, fd: fd}
		}
	case proto == "TCP" || proto == "TCPv6" || proto == "MPTCP" || proto == "MPTCPv6":
		c.add(pid, fmt.Sprintf("TCP socket%s (fd %d)", tcpAddr(pid, link, proto), fd),
			"a TCP socket is tied to this node's address",
			"close network connections before migrating (or reconnect after), or "+stayFix)
	case strings.HasPrefix(proto, "UDP"):
		c.add(pid, fmt.Sprintf("UDP socket (fd %d)", fd), "a UDP socket is tied to this node's address",
			"close it before migrating, or "+stayFix)
	case proto == "NETLINK":
		c.add(pid, fmt.Sprintf("netlink socket (fd %d)", fd), "a netlink socket talks to this node's kernel and cannot move",
			"close it before migrating, or "+stayFix)
	case proto == "PACKET":
		c.add(pid, fmt.Sprintf("packet socket (fd %d)", fd), "a packet socket is bound to this node's network interfaces",
			stayFix)
	default:
		c.add(pid, fmt.Sprintf("%s socket (fd %d)", proto, fd), "a "+proto+" socket cannot move to another node",
			"close it before migrating, or "+stayFix)
	}
}

// tcpAddr describes the TCP socket with inode link from /proc/PID/net/tcp*,
// e.g. " 0.0.0.0:8080 listening"; "" if not found.
func tcpAddr(pid int, link, proto string) string {
	ino, _ := inode(link, "socket")
	file := "tcp"
	if strings.HasSuffix(proto, "v6") {
		file = "tcp6"
	}
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "net", file))
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(l)
		if len(f) < 10 || f[9] != strconv.FormatUint(ino, 10) {
			continue
		}
		state := "connected"
		if f[3] == "0A" {
			state = "listening"
		}
		return " " + hexAddr(f[1]) + " " + state
	}
	return ""
}

// hexAddr formats /proc/net/tcp's "0100007F:1F90" as "127.0.0.1:8080";
// IPv6 addresses stay as they are, with the port decoded.
func hexAddr(s string) string {
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return s
	}
	if len(a) == 8 {
		v, err := strconv.ParseUint(a, 16, 32)
		if err == nil {
			var ip [4]byte
			binary.LittleEndian.PutUint32(ip[:], uint32(v))
			return fmt.Sprintf("%d.%d.%d.%d:%d", ip[0], ip[1], ip[2], ip[3], port)
		}
	}
	return fmt.Sprintf("[%s]:%d", a, port)
}

// checkUnix flags unix sockets connected to a peer outside the job. A
// socket without a peer (listening, or not connected) moves with the job.
// Without sock_diag (no unix_diag module) peers cannot be told and the
// check is skipped: CRIU's own error will say it at dump time.
func (c *checker) checkUnix() {
	if len(c.unix) == 0 {
		return
	}
	peers, err := unixPeers()
	if err != nil {
		return
	}
	for ino, u := range c.unix {
		peer, ok := peers[ino]
		if !ok || peer == 0 {
			continue
		}
		if _, inJob := c.unix[peer]; inJob {
			continue
		}
		c.add(u.pid, fmt.Sprintf("socket:[%d] (fd %d)", ino, u.fd),
			"a unix socket connected to a process outside the job (a daemon, syslog) cannot follow it",
			"close it before migrating, or "+stayFix)
	}
}

// unixPeers returns, for every unix socket in the caller's network
// namespace, the inode of its peer (0: none), from NETLINK_SOCK_DIAG.
func unixPeers() (map[uint64]uint64, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	const (
		sockDiagByFamily = 20
		udiagShowPeer    = 0x4
		unixDiagPeer     = 2
		reqLen           = unix.NLMSG_HDRLEN + 24
	)
	req := make([]byte, reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(req[0:], reqLen)
	ne.PutUint16(req[4:], sockDiagByFamily)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], 1)
	b := req[unix.NLMSG_HDRLEN:]
	b[0] = unix.AF_UNIX
	ne.PutUint32(b[4:], 0xffffffff) // all states
	ne.PutUint32(b[12:], udiagShowPeer)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	peers := map[uint64]uint64{}
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return peers, nil
			case unix.NLMSG_ERROR:
				return nil, errors.New("sock_diag: unix sockets not supported (load unix_diag)")
			}
			if len(m.Data) < 16 {
				continue
			}
			ino := uint64(ne.Uint32(m.Data[4:]))
			peers[ino] = 0
			for a := m.Data[16:]; len(a) >= 4; {
				l := int(ne.Uint16(a[0:]))
				if l < 4 || l > len(a) {
					break
				}
				if ne.Uint16(a[2:]) == unixDiagPeer && l >= 8 {
					peers[ino] = uint64(ne.Uint32(a[4:]))
				}
				a = a[min((l+3)&^3, len(a)):]
			}
		}
	}
}
