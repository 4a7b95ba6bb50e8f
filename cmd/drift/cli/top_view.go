package cli

import (
	"cmp"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/driftcluster/drift/agent/api"
)

// The pure half of drift top: what the cluster looked like at one
// refresh (topData), what the user is doing with it (topUI), and the
// lines the screen or a plain snapshot shows (topLines). top_screen.go
// draws them on a terminal.

// topData is one refresh: the nodes and jobs as one agent answered them,
// and the newest events.
type topData struct {
	At      time.Time
	Nodes   []api.Node
	Jobs    []api.JobInfo
	Missing []api.NodeError // nodes the job listing could not ask
	Events  []api.Event     // oldest first
	Err     error           // the refresh failed: what is shown is older
}

// Sort orders of the job table.
const (
	sortCPU  = "cpu"  // busiest first
	sortRSS  = "rss"  // largest first
	sortNode = "node" // by the node it runs on, then id
	sortAge  = "age"  // oldest first
)

// topSorts are the sort orders in the order the s key cycles them.
var topSorts = []string{sortCPU, sortRSS, sortNode, sortAge}

// sortJobs orders jobs by key; ties go by id.
func sortJobs(jobs []api.JobInfo, key string) {
	slices.SortStableFunc(jobs, func(a, b api.JobInfo) int {
		var c int
		switch key {
		case sortCPU:
			c = cmp.Compare(b.CPU, a.CPU)
		case sortRSS:
			c = cmp.Compare(b.RSS, a.RSS)
		case sortNode:
			c = strings.Compare(a.Node, b.Node)
		case sortAge:
			c = a.Started.Compare(b.Started)
		}
		if c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
}

// liveJobs are the jobs that have not exited, sorted by key, and the
// number of exited ones.
func liveJobs(all []api.JobInfo, key string) ([]api.JobInfo, int) {
	var live []api.JobInfo
	for _, j := range all {
		if j.Exit == nil && j.State != "exited" {
			live = append(live, j)
		}
	}
	sortJobs(live, key)
	return live, len(all) - len(live)
}

// topMode is what the keys do now.
type topMode int

const (
	modeBrowse     topMode = iota // arrows select a job
	modePickNode                  // after m: arrows or a digit pick the target node
	modeConfirmKil                // after k: y kills, anything else does not
)

// topUI is the state of the interactive view: the sort order, the job
// selected (by id, so it stays selected as the table reorders), and what
// a key does next.
type topUI struct {
	Sort     string
	Selected string // job id; "": the first row
	Mode     topMode
	Target   int    // modePickNode: index into the nodes pickable
	Message  string // the last action's outcome, shown in the footer
}

// topKey is a key press: a rune, or one of the named keys.
type topKey struct {
	Rune rune
	Name string // "up", "down", "enter", "esc"; "" for a rune
}

// topAction is what a key asks of the cluster.
type topAction struct {
	Kind string // "quit", "migrate", "kill"; "": nothing
	Job  string
	Node string // migrate: the target
}

// pickable lists the nodes a job may be moved to: alive ones that are
// not where it runs.
func pickable(nodes []api.Node, job api.JobInfo) []api.Node {
	var out []api.Node
	for _, n := range nodes {
		if n.State == api.NodeAlive && n.Name != job.Node {
			out = append(out, n)
		}
	}
	return out
}

// selectedJob returns the selected job among jobs (sorted as shown) and
// its row; the first job when the selected one is gone.
func (u *topUI) selectedJob(jobs []api.JobInfo) (api.JobInfo, int, bool) {
	if len(jobs) == 0 {
		return api.JobInfo{}, -1, false
	}
	for i, j := range jobs {
		if j.ID == u.Selected {
			return j, i, true
		}
	}
	return jobs[0], 0, true
}

// Key applies one key press to the view, given what it shows, and says
// what to do with the cluster.
func (u *topUI) Key(k topKey, d topData) topAction {
	jobs, _ := liveJobs(d.Jobs, u.Sort)
	job, row, ok := u.selectedJob(jobs)
	switch u.Mode {
	case modePickNode:
		targets := pickable(d.Nodes, job)
		switch {
		case k.Name == "esc" || k.Rune == 'q':
			u.Mode, u.Message = modeBrowse, ""
		case k.Name == "up":
			u.Target = max(u.Target-1, 0)
		case k.Name == "down":
			u.Target = min(u.Target+1, len(targets)-1)
		case k.Name == "enter" && ok && u.Target < len(targets):
			u.Mode = modeBrowse
			return topAction{Kind: "migrate", Job: job.ID, Node: targets[u.Target].Name}
		case k.Rune >= '1' && k.Rune <= '9' && ok && int(k.Rune-'1') < len(targets):
			u.Mode = modeBrowse
			return topAction{Kind: "migrate", Job: job.ID, Node: targets[k.Rune-'1'].Name}
		}
		return topAction{}
	case modeConfirmKil:
		u.Mode, u.Message = modeBrowse, ""
		if (k.Rune == 'y' || k.Rune == 'Y') && ok {
			return topAction{Kind: "kill", Job: job.ID}
		}
		return topAction{}
	}
	switch {
	case k.Rune == 'q' || k.Name == "esc":
		return topAction{Kind: "quit"}
	case k.Name == "up" && ok:
		u.Selected = jobs[max(row-1, 0)].ID
	case k.Name == "down" && ok:
		u.Selected = jobs[min(row+1, len(jobs)-1)].ID
	case k.Rune == 's':
		i := slices.Index(topSorts, u.Sort)
		u.Sort = topSorts[(i+1)%len(topSorts)]
	case k.Rune == 'c':
		u.Sort = sortCPU
	case k.Rune == 'r':
		u.Sort = sortRSS
	case k.Rune == 'n':
		u.Sort = sortNode
	case k.Rune == 'a':
		u.Sort = sortAge
	case k.Rune == 'm' && ok:
		u.Selected = job.ID
		if len(pickable(d.Nodes, job)) == 0 {
			u.Message = "no other node is alive to move " + job.ID + " to"
			break
		}
		u.Mode, u.Target, u.Message = modePickNode, 0, ""
	case k.Rune == 'k' && ok:
		u.Selected = job.ID
		u.Mode, u.Message = modeConfirmKil, ""
	}
	return topAction{}
}

// lineStyle is how the screen draws a line; a snapshot ignores it.
type lineStyle int

const (
	stylePlain    lineStyle = iota
	styleTitle              // the first line
	styleHeader             // column names
	styleSelected           // the selected job, the node being picked
	styleBad                // a dead or suspect node, an error
	styleFooter             // keys and prompts
)

// topLine is one line of the view.
type topLine struct {
	Text  string
	Style lineStyle
}

// Column widths of the tables, sized for 80 columns.
const (
	nodeCol  = 13 // drift-XXXXXX and the * of the node asked
	barWidth = 10
)

// topLines lays d out in width columns and at most height lines (0: as
// many as it takes, for a snapshot: every node and job, and no keys). u
// is the interactive state; nil for a snapshot.
func topLines(d topData, u *topUI, width, height int) []topLine {
	sortKey := sortCPU
	if u != nil {
		sortKey = u.Sort
	}
	jobs, exited := liveJobs(d.Jobs, sortKey)
	alive := 0
	for _, n := range d.Nodes {
		if n.State == api.NodeAlive {
			alive++
		}
	}
	var out []topLine
	add := func(style lineStyle, format string, args ...any) {
		out = append(out, topLine{fit(fmt.Sprintf(format, args...), width), style})
	}
	title := fmt.Sprintf("drift top  %d nodes, %d alive  %s", len(d.Nodes), alive, plural(len(jobs), "job"))
	if exited > 0 {
		title += fmt.Sprintf(" (+%d exited)", exited)
	}
	title += "  sort: " + sortKey
	clock := d.At.Local().Format("15:04:05")
	add(styleTitle, "%s%*s", title, max(width-len(title), len(clock)+2), clock)
	if d.Err != nil {
		add(styleBad, "refresh failed: %v", d.Err)
	}
	for _, m := range d.Missing {
		add(styleBad, "%s did not answer: its jobs may be missing", m.Node)
	}

	// The nodes, each with a bar of its load per core and of its memory
	// in use.
	var pickJob api.JobInfo
	var targets []api.Node
	if u != nil {
		pickJob, _, _ = u.selectedJob(jobs)
		if u.Mode == modePickNode {
			targets = pickable(d.Nodes, pickJob)
		}
	}
	add(styleHeader, "  %-*s %-8s %-*s %-*s %4s", nodeCol, "NODE", "STATE", barWidth+8, "LOAD", barWidth+12, "MEMORY", "JOBS")
	for _, n := range d.Nodes {
		mark, style := "  ", stylePlain
		if i := slices.IndexFunc(targets, func(t api.Node) bool { return t.Name == n.Name }); i >= 0 {
			mark = fmt.Sprintf("%d ", i+1)
			if i == u.Target {
				style = styleSelected
			}
		}
		if n.State != api.NodeAlive {
			style = styleBad
		}
		name := n.Name
		if n.Self {
			name += "*"
		}
		used := n.MemTotal - min(n.MemFree, n.MemTotal)
		add(style, "%s%-*s %-8s %s %5.2f %s %5s/%-5s %4d", mark, nodeCol, name, nodeState(n),
			bar(n.Load1/float64(max(n.CPUs, 1)), barWidth), n.Load1,
			bar(float64(used)/float64(max(n.MemTotal, 1)), barWidth), humanBytes(used), humanBytes(n.MemTotal), n.Jobs)
	}

	// The jobs, then the events, then the keys; the jobs get what the
	// nodes and a few events leave.
	var footer []topLine
	if u != nil {
		footer = append(footer, topLine{fit(topFooter(u, pickJob, targets), width), styleFooter})
	}
	const minEvents = 3
	events := d.Events
	jobRows := len(jobs)
	if height > 0 {
		room := height - len(out) - len(footer) - 2 // two headers
		nev := min(len(events), max(minEvents, room-max(jobRows, 1)))
		events = events[len(events)-nev:]
		jobRows = max(room-len(events), 0)
	} else if len(events) > 10 {
		events = events[len(events)-10:]
	}
	add(styleHeader, "  %-9s %-10s %-*s %-9s %5s %5s %6s %5s %s", "JOB", "NAME", nodeCol, "NODE", "STATE", "CPU%", "RSS", "AGE", "MOVES", "COMMAND")
	first, sel := 0, -1
	if u != nil {
		_, sel, _ = u.selectedJob(jobs)
	}
	if sel >= jobRows && jobRows > 0 {
		first = sel - jobRows + 1
	}
	for i := first; i < len(jobs) && i < first+jobRows; i++ {
		j := jobs[i]
		mark, style := "  ", stylePlain
		if i == sel {
			mark, style = "> ", styleSelected
		}
		add(style, "%s%-9s %-10s %-*s %-9s %5.0f %5s %6s %5d %s", mark, j.ID, truncate(j.Name, 10), nodeCol, j.Node, j.State,
			j.CPU, humanBytes(j.RSS), humanDuration(d.At.Sub(j.Started)), j.Moves, j.Command())
	}
	if len(jobs) == 0 && jobRows > 0 {
		add(stylePlain, "  no jobs: drift run starts one")
	}
	add(styleHeader, "  EVENTS")
	for _, e := range events {
		add(eventStyle(e), "  %s %s", e.Time.Local().Format("15:04:05"), eventSummary(e))
	}
	if height > 0 {
		for len(out)+len(footer) < height {
			out = append(out, topLine{})
		}
		out = append(out[:min(len(out), height-len(footer))], footer...)
	}
	return out
}

// topFooter is the last line: the keys, a prompt, or the outcome of the
// last action.
func topFooter(u *topUI, job api.JobInfo, targets []api.Node) string {
	switch u.Mode {
	case modePickNode:
		return fmt.Sprintf("move %s to: 1-%d or arrows and Enter; Esc cancels", job.ID, len(targets))
	case modeConfirmKil:
		return fmt.Sprintf("kill %s (%s on %s)? y/n", job.ID, job.Command(), job.Node)
	}
	if u.Message != "" {
		return u.Message
	}
	return "up/down select  m migrate  k kill  s sort (c cpu r rss n node a age)  q quit"
}

// plural is "1 job", "2 jobs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// nodeState is a node's state as top shows it: alive, suspect or dead;
// an alive node that is draining or blocked says so instead.
func nodeState(n api.Node) string {
	switch {
	case n.State != api.NodeAlive:
		return n.State
	case n.Draining:
		return "draining"
	case n.Blocked:
		return "blocked"
	}
	return n.State
}

// bar draws f (0 to 1, clamped) as [####......], width cells inside the
// brackets.
func bar(f float64, width int) string {
	n := int(min(max(f, 0), 1)*float64(width) + 0.5)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

// fit cuts s to width columns (0: no limit).
func fit(s string, width int) string {
	if width <= 0 {
		return s
	}
	r := []rune(s)
	if len(r) <= width {
		return s
	}
	return string(r[:width])
}

func eventStyle(e api.Event) lineStyle {
	switch e.Kind {
	case api.EventDeath, api.EventSuspect, api.EventRefusal:
		return styleBad
	case api.EventMigration:
		if e.Str("result") != api.MigrationOK {
			return styleBad
		}
	}
	return stylePlain
}

// eventSummary is an event in a few words, for the feed: its node, what
// happened and the figures that matter (a migration's freeze time).
func eventSummary(e api.Event) string {
	secs := func(name string) string {
		f, ok := e.Float(name)
		if !ok {
			return "?"
		}
		return time.Duration(f * float64(time.Second)).Round(10 * time.Millisecond).String()
	}
	seenBy := ""
	if e.Str("member") != e.Node {
		seenBy = " (seen by " + e.Node + ")"
	}
	switch e.Kind {
	case api.EventMigration:
		if e.Str("result") != api.MigrationOK {
			return fmt.Sprintf("%s: %s -> %s %s: %s", e.Str("job"), e.Node, e.Str("to"), e.Str("result"), e.Str("error"))
		}
		s := fmt.Sprintf("%s %s->%s frozen %s total %s", e.Str("job"), e.Node, e.Str("to"), secs("freeze_seconds"), secs("total_seconds"))
		if b, ok := e.Float("bytes"); ok {
			s += " " + humanBytes(uint64(b))
		}
		return s
	case api.EventDecision:
		return fmt.Sprintf("%s balancer: %s -> %s: %s", e.Str("job"), e.Node, e.Str("to"), e.Str("reason"))
	case api.EventRefusal:
		why := e.Str("refusal")
		if why == "" {
			why = e.Str("error")
		}
		return fmt.Sprintf("%s refused %s -> %s: %s", e.Str("job"), e.Node, e.Str("to"), why)
	case api.EventJoin:
		return e.Str("member") + " joined" + seenBy
	case api.EventSuspect:
		return e.Str("member") + " suspect" + seenBy
	case api.EventDeath:
		return e.Str("member") + " dead" + seenBy
	case api.EventStorage:
		switch {
		case e.Str("error") != "":
			return fmt.Sprintf("%s /cluster: %s", e.Node, e.Str("error"))
		case e.Str("mounted") != "true":
			return e.Node + " /cluster not mounted"
		case e.Str("healthy") != "true":
			return fmt.Sprintf("%s /cluster from %s unhealthy", e.Node, e.Str("source"))
		}
		return fmt.Sprintf("%s /cluster from %s", e.Node, e.Str("source"))
	}
	// Other kinds as drift events prints them, without the date.
	s := e.String()
	if _, rest, ok := strings.Cut(s, " "); ok {
		if _, rest, ok = strings.Cut(rest, " "); ok {
			return rest
		}
	}
	return s
}

// feedSize is how many events the feed keeps.
const feedSize = 50

// addEvent appends e to the feed, oldest first, keeping the newest
// feedSize. Every node reports a join, a suspicion or a death: the
// feed keeps the first report of one within a minute.
func addEvent(feed []api.Event, e api.Event) []api.Event {
	switch e.Kind {
	case api.EventLive, api.EventUnanswered:
		return feed
	case api.EventJoin, api.EventSuspect, api.EventDeath:
		for _, f := range feed {
			if f.Kind == e.Kind && f.Str("member") == e.Str("member") && e.Time.Sub(f.Time).Abs() < time.Minute {
				return feed
			}
		}
	}
	feed = append(feed, e)
	if len(feed) > feedSize {
		feed = slices.Delete(feed, 0, len(feed)-feedSize)
	}
	return feed
}

// writeTopSnapshot prints d as plain text, as drift top does when its
// output is not a terminal.
func writeTopSnapshot(w io.Writer, d topData, width int) error {
	var b strings.Builder
	for _, l := range topLines(d, nil, width, 0) {
		b.WriteString(strings.TrimRight(l.Text, " ") + "\n")
	}
	b.WriteString("\n")
	_, err := w.Write([]byte(b.String()))
	return err
}
