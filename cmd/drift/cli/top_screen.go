package cli

import (
	"context"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/gdamore/tcell/v2"

	"github.com/driftcluster/drift/agent/api"
)

// runTopScreen is drift top on a terminal: it draws topLines full-screen
// at every refresh and applies the keys, until q or ctx ends.
func runTopScreen(ctx context.Context, c *api.Client, f *feed, every time.Duration, sortKey string) error {
	s, err := newTopScreen()
	if err != nil {
		return err
	}
	if err := s.Init(); err != nil {
		return fmt.Errorf("open the terminal: %w", err)
	}
	defer s.Fini()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	keys := make(chan tcell.Event, 16)
	quitKeys := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); s.ChannelEvents(keys, quitKeys) }()
	defer close(quitKeys)

	// The refresher fetches at every tick, or at once when kicked (after
	// an action), and hands over the newest refresh only.
	data := make(chan topData, 1)
	kick := make(chan struct{}, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			d := fetchTop(ctx, c)
			select {
			case <-data:
			default:
			}
			data <- d
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-kick:
			}
		}
	}()

	results := make(chan string, 4)
	act := func(a topAction) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case results <- runTopAction(ctx, c, a):
			case <-ctx.Done():
				return
			}
			select {
			case kick <- struct{}{}:
			default:
			}
		}()
	}

	ui := &topUI{Sort: sortKey}
	d := topData{At: time.Now()}
	draw := func() {
		d.Events = f.events()
		w, h := s.Size()
		drawTop(s, topLines(d, ui, w, h))
	}
	draw()
	for {
		select {
		case <-ctx.Done():
			return nil
		case d = <-data:
		case msg := <-results:
			ui.Message = msg
		case ev, ok := <-keys:
			if !ok {
				return nil
			}
			switch ev := ev.(type) {
			case *tcell.EventResize:
				s.Sync()
			case *tcell.EventKey:
				k, ok := topKeyOf(ev)
				if !ok {
					continue
				}
				a := ui.Key(k, d)
				switch a.Kind {
				case "quit":
					return nil
				case "migrate":
					ui.Message = fmt.Sprintf("moving %s to %s...", a.Job, a.Node)
					act(a)
				case "kill":
					ui.Message = fmt.Sprintf("killing %s...", a.Job)
					act(a)
				}
			}
		}
		draw()
	}
}

// runTopAction does what a key asked and says how it went, for the footer.
func runTopAction(ctx context.Context, c *api.Client, a topAction) string {
	switch a.Kind {
	case "migrate":
		res, err := c.Migrate(ctx, a.Job, api.MigrateRequest{To: a.Node})
		if err != nil {
			return fmt.Sprintf("%s did not move: %v", a.Job, err)
		}
		return fmt.Sprintf("%s moved %s -> %s: frozen %s, total %s", res.Job, res.From, res.To,
			res.Freeze.Round(time.Millisecond), res.Total.Round(time.Millisecond))
	case "kill":
		if err := c.Signal(ctx, a.Job, int(syscall.SIGTERM)); err != nil {
			return fmt.Sprintf("kill %s: %v", a.Job, err)
		}
		return fmt.Sprintf("sent TERM to %s", a.Job)
	}
	return ""
}

// topKeyOf reads a key press as topUI takes it.
func topKeyOf(ev *tcell.EventKey) (topKey, bool) {
	switch ev.Key() {
	case tcell.KeyRune:
		return topKey{Rune: ev.Rune()}, true
	case tcell.KeyUp:
		return topKey{Name: "up"}, true
	case tcell.KeyDown:
		return topKey{Name: "down"}, true
	case tcell.KeyEnter:
		return topKey{Name: "enter"}, true
	case tcell.KeyEscape:
		return topKey{Name: "esc"}, true
	case tcell.KeyCtrlC:
		return topKey{Rune: 'q'}, true
	}
	return topKey{}, false
}

// topStyles are how each kind of line is drawn: nothing but bold,
// reverse and red, which a serial console and a VT100 have too.
var topStyles = map[lineStyle]tcell.Style{
	stylePlain:    tcell.StyleDefault,
	styleTitle:    tcell.StyleDefault.Bold(true),
	styleHeader:   tcell.StyleDefault.Bold(true),
	styleSelected: tcell.StyleDefault.Reverse(true),
	styleBad:      tcell.StyleDefault.Foreground(tcell.ColorRed),
	styleFooter:   tcell.StyleDefault.Reverse(true),
}

// drawTop puts lines on the screen, one per row, and shows it.
func drawTop(s tcell.Screen, lines []topLine) {
	s.Clear()
	w, _ := s.Size()
	for y, l := range lines {
		st := topStyles[l.Style]
		x := 0
		for _, r := range l.Text {
			s.SetContent(x, y, r, nil, st)
			x++
		}
		if l.Style == styleSelected || l.Style == styleFooter {
			for ; x < w; x++ {
				s.SetContent(x, y, ' ', nil, st)
			}
		}
	}
	s.Show()
}

// newTopScreen opens the terminal on /dev/tty (or on stdout, when the
// process has no controlling terminal, as on a bare console) with the
// terminfo of $TERM, or VT100's when $TERM is unset or unknown, as a
// node's console may leave it.
func newTopScreen() (tcell.Screen, error) {
	ti, err := tcell.LookupTerminfo(os.Getenv("TERM"))
	if err != nil {
		if ti, err = tcell.LookupTerminfo("vt100"); err != nil {
			return nil, fmt.Errorf("terminal description: %w", err)
		}
	}
	tty, err := tcell.NewDevTty()
	if err != nil {
		if tty, err = tcell.NewDevTtyFromDev("/proc/self/fd/1"); err != nil {
			return nil, fmt.Errorf("open the terminal: %w", err)
		}
	}
	return tcell.NewTerminfoScreenFromTtyTerminfo(tty, ti)
}
