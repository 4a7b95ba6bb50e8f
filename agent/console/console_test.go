package console

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseConsoles(t *testing.T) {
	in := "tty0                 -WU (E  p  )    4:7\nttyS0                -W- (EC p a)    4:64\n"
	if diff := cmp.Diff([]string{"tty0", "ttyS0"}, ParseConsoles(strings.NewReader(in))); diff != "" {
		t.Errorf("ParseConsoles mismatch (-want +got):\n%s", diff)
	}
	if got := ParseConsoles(strings.NewReader("../etc/passwd x\n")); len(got) != 0 {
		t.Errorf("ParseConsoles(path) = %q, want nothing", got)
	}
}

func TestEvent(t *testing.T) {
	var a, b strings.Builder
	c := New(&a, &b)
	c.Event("ready node=%s addr=%s", "drift-0a0b0c", "none")
	c.Event("two\nlines")
	want := "drift: ready node=drift-0a0b0c addr=none\r\ndrift: two lines\r\n"
	if a.String() != want || b.String() != want {
		t.Errorf("Event wrote %q and %q, want %q to both", a.String(), b.String(), want)
	}
}
