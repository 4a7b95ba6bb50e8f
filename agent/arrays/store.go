package arrays

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
	"github.com/driftcluster/drift/agent/taskexec"
)

// The queue on the shared storage, one directory per array:
//
//	ID/array.json        the spec, written once at submission
//	ID/tasks/KEY.A       attempt A of task KEY: created with O_EXCL,
//	                     which succeeds for one node only, so that two
//	                     nodes never both take it; it says who, as JSON
//	ID/tasks/KEY.A.ok    its result, exit 0 (written whole, by rename)
//	ID/tasks/KEY.A.fail  its result, any other ending
//	ID/tasks/KEY.A.lost  it was lost with its node: KEY is queued again
//	ID/tasks/KEY.A.waiting  while started ahead, waiting for a core
//	ID/killed            drift kill: nothing more starts
//	ID/KEY.out, KEY.err  the default output files
//	ID/summary.json, summary.csv  written once every task has ended
//
// Every file is written once and never changed, so that any node can read
// the queue without locks, and the state of a task is what its names say.

// record is array.json.
type record struct {
	ID        string        `json:"id"`
	Node      string        `json:"node"`
	Submitted time.Time     `json:"submitted"`
	Spec      api.ArraySpec `json:"spec"`
}

// keys lists the tasks' keys in order.
func (r *record) keys() []string {
	if len(r.Spec.Lines) > 0 {
		out := make([]string, len(r.Spec.Lines))
		for i := range out {
			out[i] = strconv.Itoa(i + 1)
		}
		return out
	}
	idx, _ := api.ParseRange(r.Spec.Range)
	out := make([]string, len(idx))
	for i, n := range idx {
		out[i] = strconv.Itoa(n)
	}
	return out
}

// claim is what tasks/KEY.A holds.
type claim struct {
	Node    string    `json:"node"`
	Job     string    `json:"job,omitempty"` // "" until the job started
	Started time.Time `json:"started"`
}

// attempt is what the names say of one attempt of a task.
type attempt struct {
	n              int
	claimed        bool // KEY.A exists
	ok, fail, lost bool
	waiting        bool // KEY.A.waiting: started ahead, waiting for a core
}

// taskState is a task as its files say.
type taskState struct {
	key      string
	attempts []attempt // by n
}

func (t *taskState) last() *attempt {
	if len(t.attempts) == 0 {
		return nil
	}
	return &t.attempts[len(t.attempts)-1]
}

func (t *taskState) failures() int {
	n := 0
	for _, a := range t.attempts {
		if a.fail {
			n++
		}
	}
	return n
}

// state is the task's state for an array with the given retries.
func (t *taskState) state(retries int, killed bool) string {
	for _, a := range t.attempts {
		if a.ok {
			return api.TaskDone
		}
	}
	last := t.last()
	switch {
	case last == nil || last.lost:
		if killed {
			return api.TaskCancelled
		}
		return api.TaskQueued
	case last.fail:
		if t.failures() <= retries && !killed {
			return api.TaskQueued
		}
		return api.TaskFailed
	default:
		return api.TaskRunning
	}
}

// next is the number of the task's next attempt.
func (t *taskState) next() int {
	if l := t.last(); l != nil {
		return l.n + 1
	}
	return 1
}

// store is the arrays' directory on the shared storage.
type store struct {
	root string // e.g. /cluster/drift/arrays
}

func (s store) dir(id string) string   { return filepath.Join(s.root, id) }
func (s store) tasks(id string) string { return filepath.Join(s.root, id, "tasks") }
func (s store) attempt(id, key string, n int) string {
	return filepath.Join(s.tasks(id), key+"."+strconv.Itoa(n))
}

// create makes a new array's directory, with an id unique in the cluster
// (mkdir succeeds once), and writes its record.
func (s store) create(node string, spec api.ArraySpec, now time.Time) (*record, error) {
	if err := os.MkdirAll(s.root, 0o755); err != nil {
		return nil, fmt.Errorf("arrays directory: %w", err)
	}
	prefix := "a-" + nodeTag(node) + "-"
	n := 1
	if ents, err := os.ReadDir(s.root); err == nil {
		for _, e := range ents {
			if m, err := strconv.Atoi(strings.TrimPrefix(e.Name(), prefix)); err == nil && strings.HasPrefix(e.Name(), prefix) && m >= n {
				n = m + 1
			}
		}
	}
	for ; ; n++ {
		id := prefix + strconv.Itoa(n)
		err := os.Mkdir(s.dir(id), 0o755)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("array directory: %w", err)
		}
		if err := os.Mkdir(s.tasks(id), 0o755); err != nil {
			return nil, fmt.Errorf("array directory: %w", err)
		}
		r := &record{ID: id, Node: node, Submitted: now, Spec: spec}
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := taskexec.WriteAtomic(filepath.Join(s.dir(id), "array.json"), b); err != nil {
			return nil, err
		}
		return r, nil
	}
}

// nodeTag is the 6 characters of a node's name an id carries
// ("drift-d1b102" → "d1b102").
func nodeTag(node string) string {
	t := strings.TrimPrefix(node, "drift-")
	t = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, strings.ToLower(t))
	if len(t) < 6 {
		t = strings.Repeat("0", 6-len(t)) + t
	}
	return t[len(t)-6:]
}

// ids lists the arrays, oldest first (by name order within a node).
func (s store) ids() ([]string, error) {
	ents, err := os.ReadDir(s.root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && api.IsArrayID(e.Name()) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

func (s store) load(id string) (*record, error) {
	b, err := os.ReadFile(filepath.Join(s.dir(id), "array.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no array %s (drift ps lists them): %w", id, fs.ErrNotExist)
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("array %s: %w", id, err)
	}
	return &r, nil
}

func (s store) killed(id string) bool {
	_, err := os.Stat(filepath.Join(s.dir(id), "killed"))
	return err == nil
}

func (s store) kill(id string) error {
	return taskexec.WriteAtomic(filepath.Join(s.dir(id), "killed"), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"))
}

// scan reads the tasks' names: one directory listing.
func (s store) scan(r *record) ([]*taskState, error) {
	ents, err := os.ReadDir(s.tasks(r.ID))
	if err != nil {
		return nil, fmt.Errorf("array %s: %w", r.ID, err)
	}
	byKey := map[string]map[int]*attempt{}
	for _, e := range ents {
		name := e.Name()
		if strings.Contains(name, ".tmp-") {
			continue
		}
		parts := strings.Split(name, ".")
		if len(parts) < 2 {
			continue
		}
		n, err := strconv.Atoi(parts[1])
		if err != nil || n < 1 {
			continue
		}
		key := parts[0]
		if byKey[key] == nil {
			byKey[key] = map[int]*attempt{}
		}
		a := byKey[key][n]
		if a == nil {
			a = &attempt{n: n}
			byKey[key][n] = a
		}
		switch {
		case len(parts) == 2:
			a.claimed = true
		case len(parts) == 3 && parts[2] == "ok":
			a.ok = true
		case len(parts) == 3 && parts[2] == "fail":
			a.fail = true
		case len(parts) == 3 && parts[2] == "lost":
			a.lost = true
		case len(parts) == 3 && parts[2] == taskexec.WaitingSuffix:
			a.waiting = true
		}
	}
	keys := r.keys()
	out := make([]*taskState, len(keys))
	for i, k := range keys {
		t := &taskState{key: k}
		for _, a := range byKey[k] {
			t.attempts = append(t.attempts, *a)
		}
		sort.Slice(t.attempts, func(i, j int) bool { return t.attempts[i].n < t.attempts[j].n })
		out[i] = t
	}
	return out, nil
}

// take claims attempt n of a task: false if another node did first. The
// claim is the file KEY.A, created here; it is written once the job has
// started (writeClaim, on the file take returns): until then, and if the
// node dies before, it is empty, and its time tells how long it has been
// claimed. One file, written on the descriptor that created it, costs the
// head half a dozen 9P messages a task.
func (s store) take(id, key string, n int) (*os.File, bool, error) {
	f, err := os.OpenFile(s.attempt(id, key, n), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("claim task %s of %s: %w", key, id, err)
	}
	return f, true, nil
}

// writeClaim writes c to the claim f that take made, in one write (a
// reader sees the whole of it or nothing), and closes f.
func writeClaim(f *os.File, c claim) error {
	b, _ := json.Marshal(c)
	_, err := f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write claim %s: %w", f.Name(), err)
	}
	return nil
}

// readClaim reads the claim of attempt n; an error if it is not written
// yet.
func (s store) readClaim(id, key string, n int) (claim, error) {
	var c claim
	b, err := os.ReadFile(s.attempt(id, key, n))
	if err != nil {
		return c, err
	}
	if len(b) == 0 {
		return c, fmt.Errorf("claim of task %s of %s: not written yet", key, id)
	}
	return c, json.Unmarshal(b, &c)
}

// readResult reads the result of attempt n: ok says which file.
func (s store) readResult(id, key string, n int, ok bool) (result, error) {
	suffix := ".fail"
	if ok {
		suffix = ".ok"
	}
	var r result
	b, err := os.ReadFile(s.attempt(id, key, n) + suffix)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(b, &r)
}

// hasResult says whether attempt n has ended (a result written since the
// last scan, perhaps).
func (s store) hasResult(id, key string, n int) bool {
	for _, suffix := range []string{".ok", ".fail"} {
		if _, err := os.Stat(s.attempt(id, key, n) + suffix); err == nil {
			return true
		}
	}
	return false
}

// markWaiting records that attempt n was started ahead of its turn and
// waits for a core (its wrapper removes the file when it is let run).
func (s store) markWaiting(id, key string, n int) error {
	return os.WriteFile(taskexec.WaitingMarker(s.attempt(id, key, n)), nil, 0o644)
}

// lose records that attempt n was lost with its node: the task is queued
// again.
func (s store) lose(id, key string, n int, why string) error {
	return taskexec.WriteLost(s.attempt(id, key, n), why)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
