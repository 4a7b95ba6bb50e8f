package arrays

import (
	"os"
	"strings"
	"syscall"
)

// Pinning the queue's directories. /cluster is a 9P mount without a
// cache (cache=mmap), on which the kernel forgets a path's directories as
// soon as nothing uses them: every stat, open or mkdir under
// /cluster/drift/arrays/ID/tasks/ walks each component again, a walk, a
// getattr and a clunk each, about 15 messages of the head's to answer. A
// look at the queue makes dozens of such calls on every node, every 2 s,
// and the head answered them at the cost of its own tasks. A directory
// held open stays known: the kernel walks from it, and only the names
// below it cost messages.

// pin holds dirs open until unpin or a remount of the shared storage.
func (s *Service) pin(dirs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range dirs {
		if s.pins[d] != nil {
			continue
		}
		f, err := os.Open(d)
		if err != nil {
			continue // not there (yet): the next look pins it
		}
		if s.pins == nil {
			s.pins = map[string]*os.File{}
		}
		s.pins[d] = f
	}
}

// unpin closes the pins of dir and of the directories below it.
func (s *Service) unpin(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for d, f := range s.pins {
		if d == dir || strings.HasPrefix(d, dir+string(os.PathSeparator)) {
			f.Close()
			delete(s.pins, d)
		}
	}
}

// checkPins drops every pin if the queue's root is no longer on the
// file system it was pinned on: the shared storage was mounted again,
// and the old pins would hold the old mount.
func (s *Service) checkPins(root string) {
	var st syscall.Stat_t
	dev := uint64(0)
	if syscall.Stat(root, &st) == nil {
		dev = uint64(st.Dev)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if dev == s.pinDev {
		return
	}
	for d, f := range s.pins {
		f.Close()
		delete(s.pins, d)
	}
	s.pinDev = dev
}
