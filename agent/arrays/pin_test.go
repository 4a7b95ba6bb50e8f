package arrays

import (
	"testing"
	"time"
)

func TestRootUnchanged(t *testing.T) {
	s := &Service{lastScan: time.Now()}
	m := time.Date(2026, 12, 1, 10, 0, 0, 4_000_000, time.UTC)
	if s.rootUnchanged(m) {
		t.Fatal("a root never listed counts as unchanged")
	}
	// Listed at once after its time was first read: a change in the same
	// clock tick, after the listing, would keep that time.
	s.listedRoot(m, time.Now(), []string{"a-d1b102-1"})
	if s.rootUnchanged(m) {
		t.Fatal("a time read just before the listing is trusted")
	}
	// The time has stood for a second before the listing.
	s.rootMSince = time.Now().Add(-2 * time.Second)
	s.listedRoot(m, time.Now(), []string{"a-d1b102-1"})
	if !s.rootUnchanged(m) {
		t.Fatal("a root listed after its time stood for a second is listed again")
	}
	if s.rootUnchanged(m.Add(time.Nanosecond)) {
		t.Fatal("a root whose time changed counts as unchanged")
	}
	s.rootM, s.rootMSince, s.listedM = m, time.Now().Add(-2*time.Second), m
	s.active = 1
	if s.rootUnchanged(m) {
		t.Fatal("an array under way does not make every look list the queue")
	}
	s.active, s.lastScan = 0, time.Now().Add(-rescanEvery)
	if s.rootUnchanged(m) {
		t.Fatal("the root is never listed again while it stays unchanged")
	}
	if s.rootUnchanged(time.Time{}) {
		t.Fatal("a root that cannot be read counts as unchanged")
	}
}

func TestSameIDs(t *testing.T) {
	s := &Service{}
	m := time.Date(2026, 12, 1, 10, 0, 0, 4_000_000, time.UTC)
	s.rootM, s.rootMSince = m, time.Now().Add(-2*time.Second)
	s.listedRoot(m, time.Now(), []string{"a-d1b102-1", "a-d1b102-2"})
	if ids, ok := s.sameIDs(m); !ok || len(ids) != 2 || ids[1] != "a-d1b102-2" {
		t.Fatalf("a root unchanged since its listing: %v %v, want its arrays", ids, ok)
	}
	if _, ok := s.sameIDs(m.Add(time.Millisecond)); ok {
		t.Fatal("a root whose time changed is not listed again")
	}
	s.listedAt = time.Now().Add(-rescanEvery)
	if _, ok := s.sameIDs(m); ok {
		t.Fatal("a root is never listed again while it stays unchanged")
	}
	s.listedRoot(m, time.Now(), nil)
	s.lookNow()
	if _, ok := s.sameIDs(m); ok {
		t.Fatal("a node told to look now does not list the root")
	}
	// A time read just before the listing is not trusted.
	s.rootMSince = time.Now()
	s.listedRoot(m, time.Now(), []string{"a-d1b102-1"})
	if _, ok := s.sameIDs(m); ok {
		t.Fatal("a time that had not stood for a second is trusted")
	}
}
