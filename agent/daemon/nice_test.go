package daemon

import (
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

func TestNiceThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("giving a thread its priority back needs root (CAP_SYS_NICE)")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	prio := func(tid int) int {
		p, err := unix.Getpriority(unix.PRIO_PROCESS, tid)
		if err != nil {
			t.Fatal(err)
		}
		return 20 - p // the raw syscall returns 20 - nice
	}
	var th niceThread
	done := make(chan [2]int)
	normal := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the niced thread ends with the goroutine
		th.start(log)
		before := prio(unix.Gettid())
		<-normal
		done <- [2]int{before, prio(unix.Gettid())}
		th.stop()
	}()
	for { // wait for start
		th.mu.Lock()
		tid := th.tid
		th.mu.Unlock()
		if tid != 0 {
			break
		}
		runtime.Gosched()
	}
	th.normal(log)
	close(normal)
	got := <-done
	if got != [2]int{19, 0} {
		t.Errorf("nice before and after normal = %v, want [19 0]", got)
	}
	// Once the node is ready, a thread that starts late is not niced.
	go func() {
		runtime.LockOSThread()
		th.start(log)
		done <- [2]int{prio(unix.Gettid()), 0}
		th.stop()
	}()
	if got, want := (<-done)[0], prio(0); got != want {
		t.Errorf("nice of a thread started after normal = %d, want the process's %d", got, want)
	}
}
