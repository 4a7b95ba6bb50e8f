package jobinit

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// refusePidfd makes pidfd_open fail with ENOSYS for the calling thread and
// the processes it starts. Go's os/exec (since Go 1.23) keeps a pidfd for
// every child when the kernel offers pidfd_open, and Debian's CRIU 3.17
// cannot checkpoint a pidfd: a Go program with a running child could not
// move. Refused the call, the Go runtime (and Python, and glibc) fall back
// to plain wait, and the job can migrate. Nothing else changes: the filter
// allows every other system call.
func refusePidfd() error {
	const (
		offNr   = 0 // struct seccomp_data: nr
		offArch = 4 // arch
	)
	filter := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offArch},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: unix.AUDIT_ARCH_X86_64},
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: offNr},
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.SYS_PIDFD_OPEN},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{Code: unix.BPF_RET | unix.BPF_K, K: unix.SECCOMP_RET_ALLOW},
	}
	prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
	// Root holds CAP_SYS_ADMIN and needs no PR_SET_NO_NEW_PRIVS, which
	// would also disarm setuid programs in the job.
	if err := unix.Prctl(unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("seccomp filter against pidfd_open: %w", err)
	}
	return nil
}
