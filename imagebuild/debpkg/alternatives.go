package debpkg

import (
	"cmp"
	"path"
	"slices"
	"strconv"
	"strings"
)

// Alternative is one `update-alternatives --install LINK NAME PATH
// PRIORITY` call of a maintainer script, with its --slave links.
type Alternative struct {
	Link     string // the generic name, e.g. /usr/bin/awk
	Name     string // the alternative's name, e.g. awk (/etc/alternatives/awk)
	Path     string // what it points to, e.g. /usr/bin/gawk
	Priority int
	Slaves   []Slave
	Package  string // the package whose script made the call; set by the caller
}

// Slave is a link that follows its master alternative.
type Slave struct {
	Link, Name, Path string
}

// ParseAlternatives returns the `update-alternatives --install` calls of a
// maintainer script (postinst), in order. It reads the script as the shell
// would split it into words: backslash-newline continues a line, quotes
// group, and ';', '&&', '||', '|' and newlines end a command. A call whose
// arguments hold shell expansions ($VAR, $(...), `...`) cannot be known
// without running the script: it is skipped and counted in skipped.
func ParseAlternatives(script []byte) (alts []Alternative, skipped int) {
	for _, cmd := range commands(string(script)) {
		i := slices.IndexFunc(cmd, func(w string) bool { return path.Base(w) == "update-alternatives" })
		if i < 0 || !slices.Contains(cmd[i+1:], "--install") {
			continue
		}
		a, ok := parseInstall(cmd[i+1:])
		if !ok {
			skipped++
			continue
		}
		alts = append(alts, a)
	}
	return alts, skipped
}

// parseInstall reads the arguments of one update-alternatives call.
func parseInstall(args []string) (Alternative, bool) {
	var a Alternative
	installed := false
	for i := 0; i < len(args); i++ {
		switch args[i] {
		case "--install":
			if i+4 >= len(args) {
				return a, false
			}
			prio, err := strconv.Atoi(args[i+4])
			if err != nil || !literal(args[i+1:i+4]...) {
				return a, false
			}
			a.Link, a.Name, a.Path, a.Priority = args[i+1], args[i+2], args[i+3], prio
			installed = true
			i += 4
		case "--slave":
			if i+3 >= len(args) || !literal(args[i+1:i+4]...) {
				return a, false
			}
			a.Slaves = append(a.Slaves, Slave{Link: args[i+1], Name: args[i+2], Path: args[i+3]})
			i += 3
		case "--log", "--altdir", "--admindir", "--instdir", "--root":
			i++ // option with an argument
		}
	}
	return a, installed && strings.HasPrefix(a.Link, "/") && strings.HasPrefix(a.Path, "/")
}

// literal reports whether words hold no shell expansion.
func literal(words ...string) bool {
	for _, w := range words {
		if strings.ContainsAny(w, "$`*?") {
			return false
		}
	}
	return true
}

// commands splits a shell script into simple commands of words. It is not
// a shell: it knows words, quotes, comments, line continuations and the
// operators that separate commands, which is what finding literal
// update-alternatives calls needs.
func commands(script string) [][]string {
	var (
		out  [][]string
		cmd  []string
		word strings.Builder
		in   bool // a word is open (possibly empty, after quotes)
	)
	endWord := func() {
		if in {
			cmd = append(cmd, word.String())
			word.Reset()
			in = false
		}
	}
	endCmd := func() {
		endWord()
		if len(cmd) > 0 {
			out = append(out, cmd)
			cmd = nil
		}
	}
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case c == '\\' && i+1 < len(script):
			i++
			if script[i] != '\n' {
				word.WriteByte(script[i])
				in = true
			}
		case c == '\'':
			j := strings.IndexByte(script[i+1:], '\'')
			if j < 0 {
				j = len(script) - i - 1
			}
			word.WriteString(script[i+1 : i+1+j])
			in = true
			i += j + 1
		case c == '"':
			i++
			for ; i < len(script) && script[i] != '"'; i++ {
				if script[i] == '\\' && i+1 < len(script) && strings.IndexByte("\"\\$`\n", script[i+1]) >= 0 {
					i++
					if script[i] == '\n' {
						continue
					}
				}
				word.WriteByte(script[i])
			}
			in = true
		case c == '#' && !in:
			for i < len(script) && script[i] != '\n' {
				i++
			}
			endCmd()
		case c == '\n' || c == ';' || c == '&' || c == '|' || c == '(' || c == ')':
			endCmd()
		case c == ' ' || c == '\t':
			endWord()
		default:
			word.WriteByte(c)
			in = true
		}
	}
	endCmd()
	return out
}

// Choose picks, for each alternative name, the call with the highest
// priority, as update-alternatives does in automatic mode; of equal
// priorities the first wins. The result is sorted by name.
func Choose(alts []Alternative) []Alternative {
	best := map[string]Alternative{}
	for _, a := range alts {
		if b, ok := best[a.Name]; !ok || a.Priority > b.Priority {
			best[a.Name] = a
		}
	}
	out := make([]Alternative, 0, len(best))
	for _, a := range best {
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b Alternative) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
