// Package debpkg reads Debian's package metadata and works out what a set
// of packages brings: the records apt-cache prints (control paragraphs as
// in `apt-cache show` and `apt-cache dumpavail`), the dependency closure of
// named packages over those records, and the update-alternatives links
// their maintainer scripts would have made. drift-image uses it to put
// Debian packages into the image without installing anything on the host
// and without running maintainer scripts. Everything here is a pure
// function over text; fetching is the caller's business.
package debpkg

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// Record is one package paragraph.
type Record struct {
	Package      string
	Version      string
	Architecture string     // "amd64", "all"...
	PreDepends   []Relation // Pre-Depends, in field order
	Depends      []Relation // Depends, in field order
	Provides     []string   // virtual package names, versions dropped
	Essential    bool       // "Essential: yes": Debian assumes it on every system
	MultiArch    string     // "same", "foreign", "allowed" or ""
}

// Relation is one comma-separated element of a dependency field: the
// package names, any one of which satisfies it ("a | b"), with version
// constraints, architecture qualifiers and restrictions dropped.
type Relation []string

// ParseRecords reads control paragraphs separated by blank lines. Fields
// it does not use are skipped; continuation lines (starting with a space)
// belong to the field before and are kept only for the fields it reads.
func ParseRecords(r io.Reader) ([]Record, error) {
	var (
		out   []Record
		cur   Record
		key   string
		value strings.Builder
	)
	finishField := func() {
		if key != "" {
			setField(&cur, key, value.String())
		}
		key = ""
		value.Reset()
	}
	finishRecord := func() {
		finishField()
		if cur.Package != "" {
			out = append(out, cur)
		}
		cur = Record{}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			finishRecord()
		case line[0] == ' ' || line[0] == '\t':
			if key != "" {
				value.WriteByte(' ')
				value.WriteString(strings.TrimSpace(line))
			}
		default:
			finishField()
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			if k = strings.TrimSpace(k); wanted(k) {
				key = k
				value.WriteString(strings.TrimSpace(v))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read package records: %w", err)
	}
	finishRecord()
	return out, nil
}

// wanted reports whether ParseRecords keeps field k.
func wanted(k string) bool {
	switch k {
	case "Package", "Version", "Architecture", "Depends", "Pre-Depends", "Provides", "Essential", "Multi-Arch":
		return true
	}
	return false
}

func setField(r *Record, k, v string) {
	switch k {
	case "Package":
		r.Package = v
	case "Version":
		r.Version = v
	case "Architecture":
		r.Architecture = v
	case "Depends":
		r.Depends = ParseRelations(v)
	case "Pre-Depends":
		r.PreDepends = ParseRelations(v)
	case "Provides":
		for _, rel := range ParseRelations(v) {
			r.Provides = append(r.Provides, rel...)
		}
	case "Essential":
		r.Essential = v == "yes"
	case "Multi-Arch":
		r.MultiArch = v
	}
}

// ParseRelations parses a dependency field such as
// "libc6 (>= 2.34), default-mta | mail-transport-agent, python3:any".
// Version constraints "(...)", architecture qualifiers ":any" and
// restrictions "[amd64]" and "<!nocheck>" are dropped.
func ParseRelations(field string) []Relation {
	var out []Relation
	for _, elem := range strings.Split(field, ",") {
		var rel Relation
		for _, alt := range strings.Split(elem, "|") {
			if name := packageName(alt); name != "" {
				rel = append(rel, name)
			}
		}
		if len(rel) > 0 {
			out = append(out, rel)
		}
	}
	return out
}

// packageName returns the package name at the start of one alternative.
func packageName(s string) string {
	s = strings.TrimSpace(s)
	end := strings.IndexAny(s, " \t([<")
	if end >= 0 {
		s = s[:end]
	}
	name, _, _ := strings.Cut(s, ":")
	return name
}
