//go:build linux

package migrate

import (
	"os"
	"regexp"
	"strings"
)

// explanations map CRIU 3.17 error messages to sentences a user can act on.
// Explain tries them on each error line in turn.
var explanations = []struct {
	re   *regexp.Regexp
	text string // may use $1... from re
}{
	{regexp.MustCompile(`(?i)(connected|established) TCP|TCP.*(tcp-established|can't dump)|Can't dump .*TCP`),
		"the job has a TCP connection, which cannot move to another node: close it before migrating, or run the job with --stay"},
	{regexp.MustCompile(`(?i)external (unix )?socket|ext-unix-sk|Can't dump half of stream unix|unix.*(peer|external)`),
		"the job has a unix socket connected to a process outside the job (a daemon or syslog), which cannot follow it: close it, or run the job with --stay"},
	{regexp.MustCompile(`(?i)(netlink|packet) socket|Can't dump (netlink|packet)`),
		"the job has a netlink or packet socket, which cannot move: run the job with --stay"},
	{regexp.MustCompile(`(?i)inherit.?fd|No inherited fd|Unable to find an inherit`),
		"the job's standard input or output could not be reconnected on the target (no inherit fd for one of its pipes): a bug in drift's stdio relay, report it"},
	{regexp.MustCompile(`Can't lookup mount=\d+ for fd=\d+ path=(\S+)`),
		"the job has $1 open on a file system that CRIU cannot find again (not the root file system or /cluster): open files under /cluster, or run the job with --stay"},
	{regexp.MustCompile(`(?i)(FPU feature required by image.*|CPU instruction capabilities do not match.*|features in image mismatch.*|xsave.*mismatch.*|cpu.*(mismatch|not supported).*)`),
		"the target CPU lacks a feature of the CPU the job started on (CRIU: $1): migrate it to a node with the same or a newer CPU"},
	{regexp.MustCompile(`File (\S+) has bad (size|mode)`),
		"the file $1 the job uses differs on the target: the nodes must run the same image, and job files must live under /cluster"},
	{regexp.MustCompile(`(?i)Can't open file (\S+) on restore|Can't open (\S+): No such file`),
		"a file the job has open ($1$2) does not exist on the target: open files under /cluster, or run the job with --stay"},
	{regexp.MustCompile(`(?i)Can't dump file \d+ of that type|tty|pts`),
		"the job has a device or terminal open, which cannot move: give it pipes or /dev/null for its standard streams"},
	{regexp.MustCompile(`(?i)inotify|fanotify|fsnotify`),
		"the job watches files with inotify or fanotify, which cannot move: run the job with --stay"},
	{regexp.MustCompile(`(?i)ghost .*limit|Can't dump ghost`),
		"the job holds a large deleted file open, which cannot be copied: close it, or run the job with --stay"},
	{regexp.MustCompile(`Unable to map .*Cannot allocate memory|Cannot allocate memory`),
		"the target could not map the job's memory: CRIU maps reserved address space (Go reserves hundreds of MB) writable while restoring, which the kernel refuses without overcommit; set vm.overcommit_memory=1 on the nodes, or pick a node with more memory"},
	{regexp.MustCompile(`(?i)(seize|ptrace).*(fail|unable|can't|Operation not permitted)|Unable to seize`),
		"CRIU could not stop the job (it is being traced or exiting): try again"},
	{regexp.MustCompile(`(?i)pid .*(busy|already)|Can't fork for (\d+).*File exists`),
		"a PID the job needs is taken on the target: try another node"},
}

// errorLine matches CRIU's log lines for errors:
// "(00.012345) Error (criu/files-reg.c:1234): Can't ...".
var errorLine = regexp.MustCompile(`Error \([^)]*\):\s*(.*)$`)

// Explain turns a CRIU log, or its tail, into a sentence a user can act
// on. It returns "" for a log without a recognised error or error line.
func Explain(log string) string {
	lines := strings.Split(strings.TrimRight(log, "\n"), "\n")
	// The first error is the cause; later ones are its consequences
	// ("Dumping FAILED").
	for _, l := range lines {
		if !strings.Contains(l, "Error") && !strings.Contains(l, "Can't") {
			continue
		}
		for _, e := range explanations {
			if m := e.re.FindStringSubmatchIndex(l); m != nil {
				return string(e.re.ExpandString(nil, e.text, l, m))
			}
		}
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if m := errorLine.FindStringSubmatch(lines[i]); m != nil {
			return "CRIU: " + strings.TrimSpace(m[1])
		}
	}
	return ""
}

// logTail is how much of a CRIU log an error carries.
const logTail = 4 << 10

// readTail returns the last logTail bytes of the file at path, starting
// at a line.
func readTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	if len(b) > logTail {
		b = b[len(b)-logTail:]
		if i := strings.IndexByte(string(b), '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// criuError builds the error for a failed CRIU operation whose log is at
// logPath.
func criuError(op, logPath string, err error) error {
	tail := readTail(logPath)
	return &CRIUError{Op: op, Reason: Explain(tail), Log: tail, Err: err}
}
