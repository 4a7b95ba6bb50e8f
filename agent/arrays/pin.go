package arrays

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
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
// and the old pins would hold the old mount. It returns the root's
// modification time (zero if it cannot be read), from the same stat.
func (s *Service) checkPins(root string) time.Time {
	var st syscall.Stat_t
	dev := uint64(0)
	var mtime time.Time
	if syscall.Stat(root, &st) == nil {
		dev, mtime = uint64(st.Dev), time.Unix(st.Mtim.Unix())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if dev == s.pinDev {
		return mtime
	}
	for d, f := range s.pins {
		f.Close()
		delete(s.pins, d)
	}
	s.pinDev = dev
	return mtime
}

// rootUnchanged reports whether a look at the queue can skip listing its
// root: no array is under way, the root has not changed since it was
// last listed, and that was lately. Every node of an idle cluster then
// costs the head a stat every 2 s, not a listing. mtime is the root's
// modification time, read just now.
func (s *Service) rootUnchanged(mtime time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !mtime.Equal(s.rootM) {
		s.rootM, s.rootMSince = mtime, time.Now()
	}
	return !mtime.IsZero() && s.active == 0 && mtime.Equal(s.listedM) && time.Since(s.lastScan) < rescanEvery
}

// listedRoot records that the root was listed after its modification
// time read mtime, and named ids. A file system stamps times at the
// coarse clock's tick, so a change made in the same tick as the one
// before the listing, but after it, would leave mtime as it was: a time
// is trusted only once it has stood for a second before a listing.
func (s *Service) listedRoot(mtime time.Time, listedAt time.Time, ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listedM, s.listedIDs, s.listedAt = time.Time{}, nil, time.Time{}
	if mtime.Equal(s.rootM) && listedAt.Sub(s.rootMSince) >= time.Second {
		s.listedM, s.listedIDs, s.listedAt = mtime, slices.Clone(ids), listedAt
	}
}

// sameIDs returns the arrays the root's last listing named, if its
// modification time, mtime, has not changed since and that listing was
// lately: while a sweep is under way every look reads the queue, and the
// root (a listing, a dozen messages for the head) changes only when an
// array is submitted or removed.
func (s *Service) sameIDs(mtime time.Time) ([]string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if mtime.IsZero() || !mtime.Equal(s.listedM) || time.Since(s.listedAt) >= rescanEvery {
		return nil, false
	}
	return slices.Clone(s.listedIDs), true
}
