//go:build linux

package migrate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

func TestNextFull(t *testing.T) {
	for _, tt := range []struct {
		name   string
		levels []int64 // bytes of each level, the full one first
		broken bool
		want   bool
	}{
		{"first", nil, false, true},
		{"after a full one", []int64{100}, false, false},
		{"increments smaller than the full one", []int64{100, 40, 50}, false, false},
		{"increments outgrew the full one", []int64{100, 60, 50}, false, true},
		{"a dump outside the chain", []int64{100, 1}, true, true},
		{"max levels", []int64{100, 1, 1, 1}, false, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var levels []Level
			for i, b := range tt.levels {
				levels = append(levels, Level{Name: fmt.Sprintf("ckpt-1-%d.tar", i+1), Bytes: b})
			}
			if got, why := nextFull(levels, tt.broken, 4); got != tt.want {
				t.Errorf("nextFull(%v, %v, 4) = %v (%s), want %v", tt.levels, tt.broken, got, why, tt.want)
			}
		})
	}
}

// fakeDump stands for what CRIU writes for dump seq of c: a pagemap, a
// pages file of size bytes and a parent link when it is an increment.
func fakeDump(t *testing.T, c *Chain, seq int, size int) *Dump {
	t.Helper()
	d := &Dump{Seq: seq, dir: filepath.Join(c.local, fmt.Sprintf("ckpt-%d-%d", c.Epoch, seq))}
	d.Full, _ = c.NextFull()
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"pagemap-1.img": fmt.Sprintf("pagemap of %d", seq),
		"pages-1.img":   strings.Repeat(fmt.Sprint(seq%10), size),
		"core-1.img":    "core",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(d.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		d.Bytes += int64(len(body))
	}
	if !d.Full {
		parent := strings.TrimSuffix(c.levels[len(c.levels)-1].Name, ".tar")
		if err := os.Symlink("../"+parent, filepath.Join(d.dir, "parent")); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// published lists the checkpoints and levels in dir, with the levels each
// checkpoint names.
func published(t *testing.T, dir string) map[string][]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for _, e := range ents {
		var names []string
		if ckptName.MatchString(e.Name()) {
			if names, err = readCheckpoint(filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		got[e.Name()] = names
	}
	return got
}

func newTestChain(t *testing.T) (*Node, *Chain) {
	t.Helper()
	root := t.TempDir()
	n := &Node{WorkDir: filepath.Join(root, "work")}
	c := n.NewChain(filepath.Join(root, "cluster", "jobs", "d1-1"), 1, 4242)
	c.MaxLevels = 3
	return n, c
}

func publish(t *testing.T, c *Chain, seq, size int, keep ...string) Published {
	t.Helper()
	p, err := c.Publish(fakeDump(t, c, seq, size), keep...)
	if err != nil {
		t.Fatalf("Publish %d: %v", seq, err)
	}
	return p
}

// The chain on the shared storage: each checkpoint names the levels it
// needs; the newest and the one before stay with their levels, nothing
// else; a full dump starts a new chain and the old one goes once no kept
// checkpoint names it.
func TestChainPublish(t *testing.T) {
	n, c := newTestChain(t)
	defer c.Close()
	p := publish(t, c, 1, 1000)
	if p.Checkpoint != filepath.Join(c.Dir, "ckpt-1-1") || p.Levels != 1 {
		t.Errorf("first Publish = %+v, want checkpoint ckpt-1-1 of 1 level", p)
	}
	publish(t, c, 2, 10)
	want := map[string][]string{
		"ckpt-1-1": {"ckpt-1-1.tar"}, "ckpt-1-1.tar": nil,
		"ckpt-1-2": {"ckpt-1-1.tar", "ckpt-1-2.tar"}, "ckpt-1-2.tar": nil,
	}
	if diff := cmp.Diff(want, published(t, c.Dir)); diff != "" {
		t.Errorf("after an increment (-want +got):\n%s", diff)
	}
	// Locally only the images a next dump reads stay: no pages.
	if fi, err := os.Stat(filepath.Join(c.local, "ckpt-1-1", "pages-1.img")); err != nil || fi.Size() != 0 {
		t.Errorf("local pages of a published level: %v, %v; want an empty file", fi, err)
	}
	// A publish cut short left a partial file; the home dropped the
	// checkpoint it replaced (checkpointed in agent/jobs).
	os.WriteFile(filepath.Join(c.Dir, ".partial-ckpt-1-9.tar"), []byte("cut"), 0o600)
	os.Remove(filepath.Join(c.Dir, "ckpt-1-1"))
	publish(t, c, 3, 10)
	want = map[string][]string{
		"ckpt-1-1.tar": nil, "ckpt-1-2.tar": nil, "ckpt-1-3.tar": nil,
		"ckpt-1-2": {"ckpt-1-1.tar", "ckpt-1-2.tar"},
		"ckpt-1-3": {"ckpt-1-1.tar", "ckpt-1-2.tar", "ckpt-1-3.tar"},
	}
	if diff := cmp.Diff(want, published(t, c.Dir)); diff != "" {
		t.Errorf("after a second increment (-want +got):\n%s", diff)
	}
	// Three levels: the next is a full one, and the old chain stays as
	// long as the checkpoint before the newest names it.
	if full, why := c.NextFull(); !full {
		t.Fatalf("NextFull after %d levels = false, want true", len(c.Levels()))
	} else if !strings.Contains(why, "3 levels") {
		t.Errorf("NextFull's why = %q, want the chain's length", why)
	}
	publish(t, c, 4, 1000)
	want = map[string][]string{
		"ckpt-1-1.tar": nil, "ckpt-1-2.tar": nil, "ckpt-1-3.tar": nil, "ckpt-1-4.tar": nil,
		"ckpt-1-3": {"ckpt-1-1.tar", "ckpt-1-2.tar", "ckpt-1-3.tar"},
		"ckpt-1-4": {"ckpt-1-4.tar"},
	}
	if diff := cmp.Diff(want, published(t, c.Dir)); diff != "" {
		t.Errorf("after a new full dump (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(filepath.Join(c.local, "ckpt-1-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the old chain's local images after a full dump: %v, want them gone", err)
	}
	// The home's record still names ckpt-1-3: it stays, with its levels.
	publish(t, c, 5, 10, "ckpt-1-3")
	want = map[string][]string{
		"ckpt-1-1.tar": nil, "ckpt-1-2.tar": nil, "ckpt-1-3.tar": nil, "ckpt-1-4.tar": nil, "ckpt-1-5.tar": nil,
		"ckpt-1-3": {"ckpt-1-1.tar", "ckpt-1-2.tar", "ckpt-1-3.tar"},
		"ckpt-1-4": {"ckpt-1-4.tar"},
		"ckpt-1-5": {"ckpt-1-4.tar", "ckpt-1-5.tar"},
	}
	if diff := cmp.Diff(want, published(t, c.Dir)); diff != "" {
		t.Errorf("with the record naming an old checkpoint (-want +got):\n%s", diff)
	}
	publish(t, c, 6, 10)
	want = map[string][]string{
		"ckpt-1-4.tar": nil, "ckpt-1-5.tar": nil, "ckpt-1-6.tar": nil,
		"ckpt-1-5": {"ckpt-1-4.tar", "ckpt-1-5.tar"},
		"ckpt-1-6": {"ckpt-1-4.tar", "ckpt-1-5.tar", "ckpt-1-6.tar"},
	}
	if diff := cmp.Diff(want, published(t, c.Dir)); diff != "" {
		t.Errorf("once nothing names the old chain (-want +got):\n%s", diff)
	}

	// A move's dump resets the memory tracking: the next is full.
	n.breakChains(4242)
	if full, _ := c.NextFull(); !full {
		t.Error("NextFull after breakChains = false, want true")
	}
}

// The first checkpoint of a stint leaves the checkpoints of the stints
// before it: the job's home restores from one of those until it hears of
// the new one.
func TestChainNewStintKeepsOld(t *testing.T) {
	_, c := newTestChain(t)
	publish(t, c, 1, 100)
	publish(t, c, 2, 10)
	c.Close()
	c2 := c.node.NewChain(c.Dir, 2, 4343)
	defer c2.Close()
	publish(t, c2, 1, 100)
	got := published(t, c.Dir)
	for _, name := range []string{"ckpt-1-2", "ckpt-1-1.tar", "ckpt-1-2.tar", "ckpt-2-1", "ckpt-2-1.tar"} {
		if _, ok := got[name]; !ok {
			t.Errorf("after a new stint's first checkpoint, %s is gone: %v", name, got)
		}
	}
	publish(t, c2, 2, 10)
	want := map[string][]string{
		"ckpt-2-1": {"ckpt-2-1.tar"}, "ckpt-2-1.tar": nil,
		"ckpt-2-2": {"ckpt-2-1.tar", "ckpt-2-2.tar"}, "ckpt-2-2.tar": nil,
	}
	if diff := cmp.Diff(want, published(t, c.Dir)); diff != "" {
		t.Errorf("after the new stint's second checkpoint (-want +got):\n%s", diff)
	}
}

// A publish that fails leaves nothing and makes the next dump a full one.
func TestChainPublishFails(t *testing.T) {
	_, c := newTestChain(t)
	defer c.Close()
	publish(t, c, 1, 100)
	dir := c.Dir
	c.Dir = filepath.Join(dir, "ckpt-1-1", "x") // under a file: cannot be made
	d := fakeDump(t, c, 2, 10)
	if _, err := c.Publish(d); err == nil {
		t.Fatal("Publish under a file = nil error")
	}
	c.Dir = dir
	if _, err := os.Stat(d.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a dump not published is still on the node: %v", err)
	}
	if full, _ := c.NextFull(); !full {
		t.Error("NextFull after a failed publish = false, want true (that dump reset the memory tracking)")
	}
	if got := c.Levels(); len(got) != 1 {
		t.Errorf("Levels after a failed publish = %v, want the one before", got)
	}
}

// Fetch lays a chain out for CRIU: the newest level as final, each one
// linked to the one before.
func TestFetchChain(t *testing.T) {
	_, c := newTestChain(t)
	defer c.Close()
	publish(t, c, 1, 1000)
	publish(t, c, 2, 10)
	p := publish(t, c, 3, 20)
	tg := &Target{WorkDir: t.TempDir()}
	if err := tg.Fetch(p.Checkpoint, "d1-1"); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(tg.WorkDir, "d1-1")
	for _, tt := range []struct{ dir, parent, pages string }{
		{"final", "../ckpt-1-2", strings.Repeat("3", 20)},
		{"ckpt-1-2", "../ckpt-1-1", strings.Repeat("2", 10)},
		{"ckpt-1-1", "", strings.Repeat("1", 1000)},
	} {
		link, _ := os.Readlink(filepath.Join(base, tt.dir, "parent"))
		if link != tt.parent {
			t.Errorf("%s/parent = %q, want %q", tt.dir, link, tt.parent)
		}
		if b, err := os.ReadFile(filepath.Join(base, tt.dir, "pages-1.img")); err != nil || string(b) != tt.pages {
			t.Errorf("%s/pages-1.img = %d bytes, %v; want the level's %d", tt.dir, len(b), err, len(tt.pages))
		}
	}

	for _, tt := range []struct{ name, body string }{
		{"a path out", "ckpt-1-1.tar\n../../etc/x.tar\n"},
		{"empty", ""},
		{"a missing level", "ckpt-1-1.tar\nckpt-1-7.tar\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			bad := filepath.Join(c.Dir, "ckpt-1-99")
			os.WriteFile(bad, []byte(tt.body), 0o600)
			defer os.Remove(bad)
			if err := tg.Fetch(bad, "d1-1"); err == nil {
				t.Errorf("Fetch of a checkpoint holding %q = nil error", tt.body)
			}
		})
	}
}

func TestUnpublish(t *testing.T) {
	_, c := newTestChain(t)
	defer c.Close()
	publish(t, c, 1, 100)
	publish(t, c, 2, 10)
	c.Unpublish()
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Unpublish the job's directory: %v (%v), want it gone", err, published(t, c.Dir))
	}
}

// A chain's scratch directory that no live chain uses (its agent died)
// goes when the next chain starts.
func TestNewChainClearsStale(t *testing.T) {
	n, c := newTestChain(t)
	defer c.Close()
	publish(t, c, 1, 10)
	stale := filepath.Join(n.WorkDir, "chain-1-99")
	os.MkdirAll(stale, 0o700)
	c2 := n.NewChain(c.Dir, 1, 5)
	defer c2.Close()
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("stale %s: %v, want it gone", stale, err)
	}
	if _, err := os.Stat(c.local); err != nil {
		t.Errorf("a live chain's %s: %v", c.local, err)
	}
}

func TestFitCost(t *testing.T) {
	ms, s := time.Millisecond, time.Second
	const mib = 1 << 20
	for _, tt := range []struct {
		name    string
		samples []costSample
		want    CostModel
	}{
		{"none: the default", nil, CostModel{Base: defaultCostBase, PerMiB: time.Second * (1 << 20) / defaultCostRate}},
		{"a full dump and increments on a line", []costSample{{bytes: 8 * mib, cost: 1300 * ms}, {bytes: mib, cost: 600 * ms}, {bytes: 2 * mib, cost: 700 * ms}},
			CostModel{Base: 500 * ms, PerMiB: 100 * ms}},
		{"one sample: the default's base, the rest per byte", []costSample{{bytes: 4 * mib, cost: 2 * s}},
			CostModel{Base: 500 * ms, PerMiB: 375 * ms}},
		{"sizes close together: the default's base", []costSample{{bytes: 4 * mib, cost: 900 * ms}, {bytes: 5 * mib, cost: 1000 * ms}},
			CostModel{Base: 500 * ms, PerMiB: 100 * ms}},
		{"cheap samples: the base is at most the cheapest", []costSample{{bytes: 4 * mib, cost: 300 * ms}},
			CostModel{Base: 300 * ms, PerMiB: 0}},
		{"cost falls with size (noise): the base at most the cheapest", []costSample{{bytes: mib, cost: 2 * s}, {bytes: 10 * mib, cost: s}},
			CostModel{Base: s, PerMiB: 9900990}},
		{"a line through zero", []costSample{{bytes: mib, cost: 100 * ms}, {bytes: 10 * mib, cost: s}},
			CostModel{Base: 0, PerMiB: 100 * ms}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := fitCost(tt.samples)
			if d := got.Base - tt.want.Base; d < -ms || d > ms {
				t.Errorf("base %v, want %v", got.Base, tt.want.Base)
			}
			if d := got.PerMiB - tt.want.PerMiB; d < -ms || d > ms {
				t.Errorf("per MiB %v, want %v", got.PerMiB, tt.want.PerMiB)
			}
		})
	}
}

func TestNodeCost(t *testing.T) {
	n := &Node{}
	want := defaultCostBase + time.Duration(float64(time.Second)*(3<<20)/defaultCostRate)
	if got := n.EstimateCost(3 << 20); got.Round(time.Millisecond) != want.Round(time.Millisecond) {
		t.Errorf("EstimateCost(3 MiB) before a sample = %v, want %v", got, want)
	}
	n.NoteCost(0, time.Second) // nothing dumped: kept out
	for range costSamples {
		n.NoteCost(1<<20, 5*time.Second)
	}
	n.NoteCost(8<<20, 1300*time.Millisecond)
	n.NoteCost(1<<20, 600*time.Millisecond)
	n.NoteCost(2<<20, 700*time.Millisecond)
	n.samples = append(n.samples, costSample{bytes: 1 << 20, cost: 9 * time.Second, at: time.Now().Add(-costSampleTTL - time.Minute)})
	// The newest 16 are kept, the stale one goes: 13 samples of 1 MiB
	// costing 5 s remain beside the line's three.
	c := n.Cost()
	if len(n.samples) != costSamples {
		t.Fatalf("%d samples kept, want %d", len(n.samples), costSamples)
	}
	if c.Base != 600*time.Millisecond {
		t.Errorf("base %v, want the cheapest sample's 600ms", c.Base)
	}
	if got := n.EstimateCost(64 << 20); got <= c.Base || got != c.Cost(64<<20) {
		t.Errorf("EstimateCost(64 MiB) = %v with model %+v", got, c)
	}
}

// The copy runs at idle priority on a thread of its own, and what it
// used is counted.
func TestIdle(t *testing.T) {
	var policy uint32
	var spun time.Duration
	cpu, err := idle(func() error {
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			return err
		}
		policy = attr.Policy
		var r0, r unix.Rusage
		unix.Getrusage(unix.RUSAGE_THREAD, &r0)
		for end := time.Now().Add(10 * time.Second); spun < 30*time.Millisecond && time.Now().Before(end); {
			unix.Getrusage(unix.RUSAGE_THREAD, &r)
			spun = rusageCPU(r) - rusageCPU(r0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if policy != unix.SCHED_IDLE {
		t.Errorf("policy inside idle = %d, want SCHED_IDLE (%d)", policy, unix.SCHED_IDLE)
	}
	if cpu < spun {
		t.Errorf("idle counted %v of CPU; the function spun %v", cpu, spun)
	}
	if attr, err := unix.SchedGetAttr(0, 0); err != nil || attr.Policy == unix.SCHED_IDLE {
		t.Errorf("the test's own thread after idle: policy %v (%v), want not SCHED_IDLE", attr, err)
	}
}

// Once the job's home has removed its directory (the job ended), a
// checkpoint being published does not make it again.
func TestChainPublishAfterRemoval(t *testing.T) {
	_, c := newTestChain(t)
	defer c.Close()
	publish(t, c, 1, 100)
	if err := os.RemoveAll(c.Dir); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Publish(fakeDump(t, c, 2, 10)); err == nil {
		t.Error("Publish into a removed job directory = nil error")
	}
	if _, err := os.Stat(c.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the job's directory after a late Publish: %v, want it still gone", err)
	}
}

// A later stint's first checkpoint makes the job's directory: the job
// may have moved before it had any checkpoint.
func TestChainLaterStintMakesDir(t *testing.T) {
	n, c := newTestChain(t)
	c.Close()
	c2 := n.NewChain(c.Dir, 3, 77)
	defer c2.Close()
	if _, err := c2.Publish(fakeDump(t, c2, 1, 10)); err != nil {
		t.Errorf("first Publish of stint 3 into no directory: %v", err)
	}
}
