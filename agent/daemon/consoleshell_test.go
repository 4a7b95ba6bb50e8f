package daemon

import (
	"slices"
	"testing"
)

// The shells go on the consoles a person types at: the serial port as
// itself, the VGA console's tty0 as tty1; others are left alone.
func TestConsoleTTYs(t *testing.T) {
	const consoles = "tty0                 -WU (EC p  )    4:1\nttyS0                -W- (E  p a)    4:64\nnetcon0              -W- (E     )\n"
	if got, want := consoleTTYs(consoles), []string{"/dev/tty1", "/dev/ttyS0"}; !slices.Equal(got, want) {
		t.Errorf("consoleTTYs = %q, want %q", got, want)
	}
	if got := consoleTTYs(""); len(got) != 0 {
		t.Errorf("no consoles: %q", got)
	}
}
