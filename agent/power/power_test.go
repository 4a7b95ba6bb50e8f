package power

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestParseEvent(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		want  Event
		press bool
	}{
		{name: "power down", in: AppendEvent(nil, Event{EvKey, KeyPower, 1}), want: Event{EvKey, KeyPower, 1}, press: true},
		{name: "power up", in: AppendEvent(nil, Event{EvKey, KeyPower, 0}), want: Event{EvKey, KeyPower, 0}},
		{name: "power repeat", in: AppendEvent(nil, Event{EvKey, KeyPower, 2}), want: Event{EvKey, KeyPower, 2}},
		{name: "another key", in: AppendEvent(nil, Event{EvKey, 30, 1}), want: Event{EvKey, 30, 1}},
		{name: "sync report", in: AppendEvent(nil, Event{0, 0, 0}), want: Event{}},
		{name: "negative value", in: AppendEvent(nil, Event{3, 1, -5}), want: Event{3, 1, -5}},
		// What the kernel wrote on an amd64 QEMU guest for one press: a
		// time stamp, then EV_KEY KEY_POWER 1.
		{name: "with a time stamp", in: []byte{
			0x5d, 0x2c, 0x00, 0x00, 0, 0, 0, 0, 0x40, 0xe2, 0x01, 0x00, 0, 0, 0, 0,
			0x01, 0x00, 0x74, 0x00, 0x01, 0x00, 0x00, 0x00}, want: Event{EvKey, KeyPower, 1}, press: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseEvent(tt.in)
			if err != nil {
				t.Fatalf("ParseEvent(%x): %v", tt.in, err)
			}
			if got != tt.want || got.Press() != tt.press {
				t.Errorf("ParseEvent(%x) = %+v (press %v), want %+v (press %v)", tt.in, got, got.Press(), tt.want, tt.press)
			}
		})
	}
	if _, err := ParseEvent(make([]byte, eventSize-1)); err == nil {
		t.Errorf("ParseEvent of %d bytes succeeded, want an error", eventSize-1)
	}
}

func TestReadPresses(t *testing.T) {
	press, release := Event{EvKey, KeyPower, 1}, Event{EvKey, KeyPower, 0}
	sync := Event{}
	tests := []struct {
		name    string
		events  []Event
		extra   []byte // bytes after the events
		want    int
		wantErr bool
	}{
		{name: "nothing", want: 0},
		{name: "one press", events: []Event{press, sync, release, sync}, want: 1},
		{name: "two presses", events: []Event{press, sync, release, sync, press, sync, release, sync}, want: 2},
		{name: "held down", events: []Event{press, {EvKey, KeyPower, 2}, {EvKey, KeyPower, 2}, release}, want: 1},
		{name: "other keys", events: []Event{{EvKey, 30, 1}, {EvKey, 30, 0}, {1, 117, 1}}, want: 0},
		{name: "a partial event at the end", events: []Event{press}, extra: []byte{1, 2, 3}, want: 1, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []byte
			for _, e := range tt.events {
				b = AppendEvent(b, e)
			}
			b = append(b, tt.extra...)
			n := 0
			err := ReadPresses(bytes.NewReader(b), func() { n++ })
			if (err != nil) != tt.wantErr || n != tt.want {
				t.Errorf("ReadPresses(%v) = %d presses, %v; want %d, error %v", tt.events, n, err, tt.want, tt.wantErr)
			}
		})
	}
}

// TestReadPressesOneByteAtATime: a reader that returns less than an event
// per read loses nothing.
func TestReadPressesOneByteAtATime(t *testing.T) {
	var b []byte
	for range 3 {
		b = AppendEvent(b, Event{EvKey, KeyPower, 1})
		b = AppendEvent(b, Event{EvKey, KeyPower, 0})
	}
	n := 0
	if err := ReadPresses(oneByte{bytes.NewReader(b)}, func() { n++ }); err != nil || n != 3 {
		t.Errorf("ReadPresses one byte at a time = %d presses, %v; want 3, nil", n, err)
	}
}

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:min(1, len(p))]) }

// fakeSys makes a sysfs input class under dir with the event devices
// named in names (event name → device name).
func fakeSys(t *testing.T, names map[string]string) string {
	t.Helper()
	sys := t.TempDir()
	for ev, name := range names {
		d := filepath.Join(sys, "class", "input", ev, "device")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "name"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// input0 is the device itself, not its event handler: never listed.
	os.MkdirAll(filepath.Join(sys, "class", "input", "input0"), 0o755)
	os.WriteFile(filepath.Join(sys, "class", "input", "input0", "name"), []byte(ButtonName+"\n"), 0o644)
	return sys
}

func TestButtons(t *testing.T) {
	sys := fakeSys(t, map[string]string{
		"event0": "Power Button",
		"event1": "AT Translated Set 2 keyboard",
		"event2": "Power Button",
		"event3": "Sleep Button",
		"mouse0": "Power Button",
	})
	got, err := Buttons(sys)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"event0", "event2"}, got); diff != "" {
		t.Errorf("Buttons() (-want +got):\n%s", diff)
	}
	if got, err := Buttons(t.TempDir()); err == nil {
		t.Errorf("Buttons of an empty sysfs = %v, nil; want an error", got)
	}
}

// TestWatcher reads presses from a FIFO standing in for the event device.
func TestWatcher(t *testing.T) {
	sys := fakeSys(t, map[string]string{"event3": ButtonName, "event4": "keyboard"})
	dev := t.TempDir()
	fifo := filepath.Join(dev, "event3")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var presses atomic.Int32
	pressed := make(chan struct{}, 10)
	done := make(chan error, 1)
	w := &Watcher{Sys: sys, Dev: dev, Wait: time.Second}
	go func() {
		done <- w.Run(ctx, func() { presses.Add(1); pressed <- struct{}{} })
	}()
	f, err := os.OpenFile(fifo, os.O_WRONLY, 0) // blocks until the watcher opens it
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var b []byte
	b = AppendEvent(b, Event{EvKey, KeyPower, 1})
	b = AppendEvent(b, Event{})
	b = AppendEvent(b, Event{EvKey, KeyPower, 0})
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	select {
	case <-pressed:
	case <-time.After(10 * time.Second):
		t.Fatal("no press seen after one was written")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after its context ended = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	if n := presses.Load(); n != 1 {
		t.Errorf("%d presses seen, want 1", n)
	}
}

func TestWatcherNoButton(t *testing.T) {
	sys := fakeSys(t, map[string]string{"event0": "keyboard"})
	w := &Watcher{Sys: sys, Dev: t.TempDir(), Wait: 100 * time.Millisecond}
	if err := w.Run(context.Background(), func() {}); !errors.Is(err, ErrNoButton) {
		t.Errorf("Run with no power button = %v, want ErrNoButton", err)
	}
}

// node is a fake node for Shutdown: its jobs leave as a script says.
type node struct {
	mu      sync.Mutex
	jobs    []Job
	drained bool
	leave   func(n *node) // called on every Jobs while draining
	lines   []string
	offs    int
	offErr  error
}

func (n *node) shutdown(limit time.Duration) *Shutdown {
	return &Shutdown{
		Node: "drift-a1b2c3",
		Drain: func() {
			n.mu.Lock()
			n.drained = true
			n.mu.Unlock()
		},
		Jobs: func() []Job {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.drained && n.leave != nil {
				n.leave(n)
			}
			return append([]Job(nil), n.jobs...)
		},
		Say: func(format string, args ...any) {
			n.mu.Lock()
			n.lines = append(n.lines, fmt.Sprintf(format, args...))
			n.mu.Unlock()
		},
		Off: func() error {
			n.mu.Lock()
			defer n.mu.Unlock()
			n.offs++
			return n.offErr
		},
		Limit: limit,
		Poll:  5 * time.Millisecond,
	}
}

func TestShutdown(t *testing.T) {
	tests := []struct {
		name      string
		jobs      []Job
		leave     func(n *node)
		limit     time.Duration
		again     bool // press a second time
		offErr    error
		wantLines []string // substrings of the lines said, in order
		wantErr   bool
	}{
		{
			name:      "no jobs",
			wantLines: []string{"power button: draining drift-a1b2c3, then powering off (press again to power off now); jobs here: 0", "no job runs on drift-a1b2c3 after"},
		},
		{
			name:  "jobs leave",
			jobs:  []Job{{ID: "a-1"}, {ID: "a-2"}},
			leave: func(n *node) { n.jobs = n.jobs[1:] }, // one per look
			// The first look, right after the drain began, finds one gone.
			wantLines: []string{"draining drift-a1b2c3, then powering off", "waiting for 1 job to leave drift-a1b2c3: [a-2]",
				"no job runs on drift-a1b2c3"},
		},
		{
			name:      "a job that stays",
			jobs:      []Job{{ID: "a-1"}, {ID: "a-2", Stays: true}},
			leave:     func(n *node) { n.jobs = slices.DeleteFunc(n.jobs, func(j Job) bool { return j.ID == "a-1" }) },
			wantLines: []string{"jobs here: 2", "jobs [a-2] stay on drift-a1b2c3 (drift run --stay) and end as it powers off now"},
		},
		{
			name:      "a job that cannot move",
			jobs:      []Job{{ID: "a-1"}},
			limit:     50 * time.Millisecond,
			wantLines: []string{"jobs here: 1", "waiting for 1 job to leave", "jobs [a-1] could not leave drift-a1b2c3 within 50ms (drift why JOB says why); they end as it powers off now"},
		},
		{
			name:      "pressed again",
			jobs:      []Job{{ID: "a-1"}},
			limit:     time.Hour,
			again:     true,
			wantLines: []string{"jobs here: 1", "waiting for 1 job to leave", "power button pressed again: powering drift-a1b2c3 off now; jobs [a-1] end with it"},
		},
		{
			name:      "the machine stays on",
			offErr:    errors.New("operation not permitted"),
			wantLines: []string{"jobs here: 0", "no job runs", "error power off drift-a1b2c3: operation not permitted"},
			wantErr:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &node{jobs: tt.jobs, leave: tt.leave, offErr: tt.offErr}
			s := n.shutdown(tt.limit)
			presses := make(chan struct{}, 2)
			presses <- struct{}{}
			if tt.again {
				go func() {
					time.Sleep(50 * time.Millisecond)
					presses <- struct{}{}
				}()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err := s.Run(ctx, presses)
			if (err != nil) != tt.wantErr || ctx.Err() != nil {
				t.Fatalf("Run = %v, want error %v (context: %v)", err, tt.wantErr, ctx.Err())
			}
			n.mu.Lock()
			defer n.mu.Unlock()
			if !n.drained || n.offs != 1 {
				t.Errorf("drained %v, powered off %d times; want drained and once", n.drained, n.offs)
			}
			i := 0
			for _, l := range n.lines {
				if i < len(tt.wantLines) && strings.Contains(l, tt.wantLines[i]) {
					i++
				}
			}
			if i < len(tt.wantLines) {
				t.Errorf("lines said:\n%s\nwant, in order, lines with:\n%s", strings.Join(n.lines, "\n"), strings.Join(tt.wantLines, "\n"))
			}
		})
	}
}

// TestShutdownWaitsForAPress: nothing happens before the button is
// pressed, and Run returns when its context ends.
func TestShutdownWaitsForAPress(t *testing.T) {
	n := &node{jobs: []Job{{ID: "a-1"}}}
	s := n.shutdown(0)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx, make(chan struct{})); err != nil {
		t.Errorf("Run with no press = %v, want nil when its context ends", err)
	}
	if n.drained || n.offs != 0 || len(n.lines) != 0 {
		t.Errorf("with no press: drained %v, powered off %d times, said %q; want nothing", n.drained, n.offs, n.lines)
	}
}
