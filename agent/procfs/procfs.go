// Package procfs reads process trees and what they use from /proc: the
// one reader of them for drift ps, the balancer (agent/jobs) and
// migration (agent/migrate), so that they agree on what a job is and
// what it weighs. It reads through an fs.FS, so tests can give it a fake
// /proc.
package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// Proc reads a proc file system. The zero Proc reads the host's /proc.
type Proc struct {
	FS       fs.FS // rooted at proc's mount point; nil: os.DirFS("/proc")
	PageSize int   // 0: os.Getpagesize()
}

var hostProc = os.DirFS("/proc")

func (p Proc) fsys() fs.FS {
	if p.FS == nil {
		return hostProc
	}
	return p.FS
}

func (p Proc) pageSize() uint64 {
	if p.PageSize == 0 {
		return uint64(os.Getpagesize())
	}
	return uint64(p.PageSize)
}

// Tree returns the PIDs (thread-group ids) of pid and all its
// descendants, pid first, from /proc/PID/task/*/children (the children of
// every thread, as CRIU walks them). A descendant that exits meanwhile is
// left out; pid itself gone is an error matching fs.ErrNotExist.
func (p Proc) Tree(pid int) ([]int, error) {
	fsys := p.fsys()
	seen := map[int]bool{pid: true}
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		dir := path.Join(strconv.Itoa(out[i]), "task")
		tasks, err := fs.ReadDir(fsys, dir)
		if err != nil {
			if i == 0 {
				return nil, fmt.Errorf("process %d: %w", pid, fs.ErrNotExist)
			}
			continue // exited meanwhile
		}
		for _, t := range tasks {
			b, err := fs.ReadFile(fsys, path.Join(dir, t.Name(), "children"))
			if err != nil {
				continue // the thread exited
			}
			for _, f := range strings.Fields(string(b)) {
				c, err := strconv.Atoi(f)
				if err != nil || seen[c] {
					continue
				}
				seen[c] = true
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// TreeThreads lists the threads of pid and of all its descendants (their
// ids in this /proc's PID namespace); those that exit meanwhile are left
// out.
func (p Proc) TreeThreads(pid int) []int {
	pids, err := p.Tree(pid)
	if err != nil {
		return nil
	}
	var out []int
	for _, q := range pids {
		tasks, err := fs.ReadDir(p.fsys(), path.Join(strconv.Itoa(q), "task"))
		if err != nil {
			continue
		}
		for _, t := range tasks {
			if tid, err := strconv.Atoi(t.Name()); err == nil {
				out = append(out, tid)
			}
		}
	}
	return out
}

// Usage is what a process, or a tree of them, has used.
type Usage struct {
	Ticks  uint64 // CPU time, user and system, in USER_HZ ticks (1/100 s)
	WantNs uint64 // time its threads ran or waited on a run queue, in ns
	RSS    uint64 // resident bytes, file pages included: what drift ps shows
	Anon   uint64 // resident bytes not backed by a file: what a dump copies, and so what moving it costs
}

func (u *Usage) add(v Usage) {
	u.Ticks += v.Ticks
	u.WantNs += v.WantNs
	u.RSS += v.RSS
	u.Anon += v.Anon
}

// TreeUsage sums the Usage of pid and its descendants.
func (p Proc) TreeUsage(pid int) (Usage, error) {
	pids, err := p.Tree(pid)
	if err != nil {
		return Usage{}, err
	}
	var total Usage
	for _, q := range pids {
		u, err := p.Usage(q)
		if err != nil {
			continue // exited meanwhile
		}
		total.add(u)
	}
	return total, nil
}

// Usage reads one process's Usage from /proc/PID/stat, statm and
// task/*/schedstat.
func (p Proc) Usage(pid int) (Usage, error) {
	fsys := p.fsys()
	dir := strconv.Itoa(pid)
	b, err := fs.ReadFile(fsys, path.Join(dir, "stat"))
	if err != nil {
		return Usage{}, fmt.Errorf("process %d: %w", pid, err)
	}
	var u Usage
	// The fields after the command name, which may hold spaces, in parentheses.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 22 {
		return Usage{}, fmt.Errorf("process %d: %w", pid, errBadStat)
	}
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	pages, _ := strconv.ParseUint(f[21], 10, 64)
	u.Ticks, u.RSS = ut+st, pages*p.pageSize()
	if b, err := fs.ReadFile(fsys, path.Join(dir, "statm")); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			resident, _ := strconv.ParseUint(f[1], 10, 64)
			shared, _ := strconv.ParseUint(f[2], 10, 64) // file-backed and shared pages
			if resident > shared {
				u.Anon = (resident - shared) * p.pageSize()
			}
		}
	}
	tasks, _ := fs.ReadDir(fsys, path.Join(dir, "task"))
	for _, t := range tasks {
		b, err := fs.ReadFile(fsys, path.Join(dir, "task", t.Name(), "schedstat"))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			run, _ := strconv.ParseUint(f[0], 10, 64)
			wait, _ := strconv.ParseUint(f[1], 10, 64)
			u.WantNs += run + wait
		}
	}
	return u, nil
}

var errBadStat = errors.New("stat has too few fields")

// statFields are the fields of /proc/PID/stat after the command name
// (which may hold spaces and parentheses): state first. nil if the
// process is gone or its stat cannot be read.
func (p Proc) statFields(pid int) [][]byte {
	b, err := fs.ReadFile(p.fsys(), path.Join(strconv.Itoa(pid), "stat"))
	if err != nil {
		return nil
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil
	}
	return bytes.Fields(b[i+1:])
}

// Parent is process pid's parent (its PPid in /proc/PID/stat), 0 if the
// process is gone or its stat cannot be read.
func (p Proc) Parent(pid int) int {
	f := p.statFields(pid)
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(string(f[1]))
	return ppid
}

// pfExiting is the kernel's PF_EXITING flag in /proc/PID/stat's flags.
const pfExiting = 0x4

// Exiting reports whether process pid has begun to exit (killed, or its
// last thread returned) but has not been reaped.
func (p Proc) Exiting(pid int) bool {
	f := p.statFields(pid)
	if len(f) < 7 {
		return false // gone
	}
	flags, err := strconv.ParseUint(string(f[6]), 10, 64)
	return err == nil && flags&pfExiting != 0
}

// Comm is process pid's command name (/proc/PID/comm, as the process
// may have set it itself); "" if the process is gone.
func (p Proc) Comm(pid int) string {
	b, err := fs.ReadFile(p.fsys(), path.Join(strconv.Itoa(pid), "comm"))
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(b), "\n")
}

// TreeRSS sums the resident memory of pid and its descendants now
// (/proc/PID/statm), the way a tree of processes uses memory at once.
func (p Proc) TreeRSS(pid int) (uint64, error) {
	pids, err := p.Tree(pid)
	if err != nil {
		return 0, err
	}
	var sum uint64
	for _, q := range pids {
		b, err := fs.ReadFile(p.fsys(), path.Join(strconv.Itoa(q), "statm"))
		if err != nil {
			continue // exited meanwhile
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			sum += pages * p.pageSize()
		}
	}
	return sum, nil
}

// PeakRSS is the high-water mark of pid's resident memory since it
// started or last executed a program (VmHWM in /proc/PID/status), in
// bytes; "self" is this process.
func (p Proc) PeakRSS(pid string) (uint64, error) {
	b, err := fs.ReadFile(p.fsys(), path.Join(pid, "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("process %s: VmHWM: %w", pid, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("process %s: no VmHWM in its status", pid)
}

// ChildID is the id under which /proc lists this process's child whose
// id in this process's own PID namespace is pid; 0 if there is none. A
// job runs in a PID namespace of its own but sees the node's /proc,
// whose ids are of the outer namespace; they change when the job moves
// to another node, so the lookup is made each time.
func (p Proc) ChildID(pid int) int {
	fsys := p.fsys()
	tasks, err := fs.ReadDir(fsys, "self/task")
	if err != nil {
		return 0
	}
	for _, t := range tasks {
		b, err := fs.ReadFile(fsys, path.Join("self/task", t.Name(), "children"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			c, err := strconv.Atoi(f)
			if err != nil {
				continue
			}
			if c == pid || p.innerID(c) == pid {
				return c
			}
		}
	}
	return 0
}

// innerID is process id's id in its innermost PID namespace (the last
// NSpid entry of its status); 0 if it is gone.
func (p Proc) innerID(id int) int {
	b, err := fs.ReadFile(p.fsys(), path.Join(strconv.Itoa(id), "status"))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "NSpid:" {
			n, _ := strconv.Atoi(f[len(f)-1])
			return n
		}
	}
	return 0
}
