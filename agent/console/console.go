// Package console writes the agent's console events: one line each,
// prefixed "drift: ", on every console the kernel was given (serial and
// VGA), so that people and test harnesses can wait for them.
package console

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
)

// Prefix starts every console event line.
const Prefix = "drift: "

// Console writes events to a set of writers.
type Console struct {
	mu  sync.Mutex
	out []io.Writer
}

// New returns a Console that writes to ws.
func New(ws ...io.Writer) *Console { return &Console{out: ws} }

// Open returns a Console writing to every device listed in procConsoles
// (the format of /proc/consoles), opened under devDir. If none can be
// opened it falls back to fallback (e.g. os.Stdout).
func Open(procConsoles, devDir string, fallback io.Writer) *Console {
	c := &Console{}
	if f, err := os.Open(procConsoles); err == nil {
		for _, name := range ParseConsoles(f) {
			if d, err := os.OpenFile(devDir+"/"+name, os.O_WRONLY|syscall.O_NOCTTY, 0); err == nil {
				c.out = append(c.out, d)
			}
		}
		f.Close()
	}
	if len(c.out) == 0 {
		c.out = append(c.out, fallback)
	}
	return c
}

// Tee makes the console write its events to w as well (e.g. the log
// that the API serves).
func (c *Console) Tee(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.out = append(c.out, w)
}

// ParseConsoles returns the device names listed in /proc/consoles
// (first field of each line), in order.
func ParseConsoles(r io.Reader) []string {
	var names []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 0 && !strings.ContainsAny(f[0], "/.") {
			names = append(names, f[0])
		}
	}
	return names
}

// Event writes one "drift: ..." line. Newlines in the message are
// replaced so an event is always exactly one line.
func (c *Console) Event(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	line := Prefix + msg + "\r\n"
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.out {
		io.WriteString(w, line)
	}
}
