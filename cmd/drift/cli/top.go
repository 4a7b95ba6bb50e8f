package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// runTop shows the cluster live: the nodes with bars for load and
// memory, the jobs, and the newest events, refreshed every second. On a
// terminal it is a full-screen view with keys to sort, migrate and kill
// (top_screen.go); otherwise it prints a plain snapshot per refresh, or
// one with --once.
func runTop(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("top", "[--once] [-d SECONDS] [--sort cpu|rss|node|age]", stderr)
	once := fs.Bool("once", false, "print one plain snapshot and exit")
	every := fs.Duration("d", time.Second, "refresh every `INTERVAL`")
	sortKey := fs.String("sort", sortCPU, "sort the jobs by cpu, rss, node or age")
	cf := addClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 || *every <= 0 || !validSort(*sortKey) {
		fs.Usage()
		return fmt.Errorf("want no arguments, -d above 0 and --sort cpu, rss, node or age: %w", errUsage)
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	if *once {
		d := fetchTop(ctx, c)
		if d.Err != nil {
			return d.Err
		}
		st, err := c.Events(ctx, api.EventsQuery{Lines: 10})
		if err == nil {
			d.Events = readFeed(st, nil)
		}
		return writeTopSnapshot(stdout, d, snapshotWidth())
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f := &feed{}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Add(1)
	go func() { defer wg.Done(); f.follow(ctx, c) }()
	if isTerminal(stdout) {
		return runTopScreen(ctx, c, f, *every, *sortKey)
	}
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		d := fetchTop(ctx, c)
		d.Events = f.events()
		if err := writeTopSnapshot(stdout, d, snapshotWidth()); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func validSort(key string) bool {
	for _, s := range topSorts {
		if s == key {
			return true
		}
	}
	return false
}

// snapshotWidth is the width of plain snapshots: $COLUMNS, else 80.
func snapshotWidth() int {
	if n, err := strconv.Atoi(os.Getenv("COLUMNS")); err == nil && n > 0 {
		return n
	}
	return 80
}

// fetchTop asks the agent for the nodes and the jobs, within a refresh's
// time: a node that does not answer in time is named, not waited for.
func fetchTop(ctx context.Context, c *api.Client) topData {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d := topData{At: time.Now()}
	nodes, err := c.Nodes(ctx)
	if err != nil {
		d.Err = err
		return d
	}
	ps, err := c.PS(ctx)
	d.Nodes, d.Jobs, d.Missing, d.Err = nodes, ps.Jobs, ps.Unanswered, err
	return d
}

// feed follows the cluster's event stream and keeps the newest events,
// connecting again when the stream breaks.
type feed struct {
	mu   sync.Mutex
	list []api.Event
}

func (f *feed) events() []api.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Event(nil), f.list...)
}

// follow reads events until ctx ends.
func (f *feed) follow(ctx context.Context, c interface {
	Events(context.Context, api.EventsQuery) (*api.EventStream, error)
}) {
	for ctx.Err() == nil {
		// After a break the newest events come again: the feed drops
		// those it holds.
		st, err := c.Events(ctx, api.EventsQuery{Lines: 20, Follow: true})
		if err == nil {
			readFeed(st, f)
			st.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
	}
}

// readFeed reads st to its end: into f when f is not nil, else into the
// list it returns.
func readFeed(st *api.EventStream, f *feed) []api.Event {
	var list []api.Event
	for {
		e, err := st.Next()
		if err != nil { // io.EOF, or the stream broke
			return list
		}
		if f == nil {
			list = addEvent(list, e)
			continue
		}
		f.mu.Lock()
		if !seen(f.list, e) {
			f.list = addEvent(f.list, e)
		}
		f.mu.Unlock()
	}
}

// seen says whether the feed holds e already (read again after the
// stream broke).
func seen(list []api.Event, e api.Event) bool {
	for _, f := range list {
		if f.Time.Equal(e.Time) && f.Node == e.Node && f.Kind == e.Kind {
			return true
		}
	}
	return false
}
