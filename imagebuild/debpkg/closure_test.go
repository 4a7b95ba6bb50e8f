package debpkg

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// archive builds an index from "name: dep, dep | alt; provides" lines:
// the part after ';' lists what the package provides, a leading '!'
// marks it Essential.
func archive(lines ...string) *Index {
	var recs []Record
	for _, l := range lines {
		head, rest, _ := strings.Cut(l, ":")
		deps, provides, _ := strings.Cut(rest, ";")
		r := Record{Package: strings.TrimPrefix(head, "!"), Version: "1", Architecture: "amd64", Essential: strings.HasPrefix(head, "!")}
		r.Depends = ParseRelations(deps)
		for _, p := range ParseRelations(provides) {
			r.Provides = append(r.Provides, p...)
		}
		recs = append(recs, r)
	}
	return NewIndex(recs)
}

func names(recs []*Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Package)
	}
	return out
}

func TestResolve(t *testing.T) {
	tests := []struct {
		name      string
		index     *Index
		want      []string // packages asked for
		base      []string
		fetch     []string
		baseUsed  []string
		wantError string // substring; "": none
	}{
		{
			name:  "chain, versions dropped",
			index: archive("python3: python3.11 (>= 3.11), libc6", "python3.11: libc6 (>= 2.34), zlib1g", "libc6:", "zlib1g: libc6"),
			want:  []string{"python3"},
			fetch: []string{"python3", "python3.11", "libc6", "zlib1g"},
		},
		{
			name:     "base packages satisfy and are not fetched or followed",
			index:    archive("python3: libc6, libffi8", "libc6: libgcc-s1", "libffi8: libc6", "libgcc-s1:"),
			want:     []string{"python3"},
			base:     []string{"libc6", "libffi8"},
			fetch:    []string{"python3"},
			baseUsed: []string{"libc6", "libffi8"},
		},
		{
			name:  "pre-depends followed first",
			index: NewIndex([]Record{{Package: "a", PreDepends: []Relation{{"p"}}, Depends: []Relation{{"d"}}}, {Package: "d"}, {Package: "p"}}),
			want:  []string{"a"},
			fetch: []string{"a", "p", "d"},
		},
		{
			name:  "virtual package: first provider by name",
			index: archive("script: awk", "mawk:; awk", "gawk:; awk", "original-awk:; awk"),
			want:  []string{"script"},
			fetch: []string{"script", "gawk"},
		},
		{
			name:  "virtual package: a provider already chosen wins",
			index: archive("script: mawk, awk", "mawk:; awk", "gawk:; awk"),
			want:  []string{"script"},
			fetch: []string{"script", "mawk"},
		},
		{
			name:     "virtual package: a provider in the base wins",
			index:    archive("script: awk", "mawk:; awk", "gawk:; awk"),
			want:     []string{"script"},
			base:     []string{"mawk"},
			fetch:    []string{"script"},
			baseUsed: []string{"mawk"},
		},
		{
			name:  "virtual name asked for directly",
			index: archive("mawk:; awk", "gawk:; awk"),
			want:  []string{"awk"},
			fetch: []string{"gawk"},
		},
		{
			name:  "alternatives: the first that exists",
			index: archive("x: nonexistent | media-types | mime-support", "media-types:", "mime-support: media-types"),
			want:  []string{"x"},
			fetch: []string{"x", "media-types"},
		},
		{
			name:  "alternatives: one already chosen wins over the first",
			index: archive("x: mime-support, media-types | mime-support", "media-types:", "mime-support:"),
			want:  []string{"x"},
			fetch: []string{"x", "mime-support"},
		},
		{
			name:     "alternatives: one in the base wins over the first",
			index:    archive("readline-common: install-info | dpkg", "install-info:", "!dpkg:"),
			want:     []string{"readline-common"},
			base:     []string{"dpkg"},
			fetch:    []string{"readline-common"},
			baseUsed: []string{"dpkg"},
		},
		{
			name:  "alternatives: a real package before a virtual one",
			index: archive("x: mail-transport-agent | exim4", "exim4:", "postfix:; mail-transport-agent"),
			want:  []string{"x"},
			fetch: []string{"x", "exim4"},
		},
		{
			name:  "cycle",
			index: archive("a: b", "b: c", "c: a, b"),
			want:  []string{"a"},
			fetch: []string{"a", "b", "c"},
		},
		{
			name:  "self-dependency and a name asked twice",
			index: archive("a: a"),
			want:  []string{"a", "a"},
			fetch: []string{"a"},
		},
		{
			name:      "unknown name asked for",
			index:     archive("python3:"),
			want:      []string{"python3", "pyhton3"},
			wantError: `package "pyhton3" is not in the archive`,
		},
		{
			name:      "unknown dependency",
			index:     archive("a: b", "b: gone (>= 2)"),
			want:      []string{"a"},
			wantError: `b depends on "gone", which is not in the archive`,
		},
		{
			name:     "a base package the archive no longer lists",
			index:    archive("a: oldlib"),
			want:     []string{"a"},
			base:     []string{"oldlib"},
			fetch:    []string{"a"},
			baseUsed: []string{"oldlib"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Resolve(tt.index, tt.want, tt.base)
			if tt.wantError != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantError) {
					t.Fatalf("Resolve(%q) error = %v, want one containing %q", tt.want, err, tt.wantError)
				}
				var u *UnknownError
				if !errors.As(err, &u) {
					t.Errorf("Resolve(%q) error %v is not an *UnknownError", tt.want, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve(%q) = %v", tt.want, err)
			}
			if diff := cmp.Diff(tt.fetch, names(c.Fetch)); diff != "" {
				t.Errorf("Resolve(%q).Fetch (-want +got):\n%s", tt.want, diff)
			}
			if diff := cmp.Diff(tt.baseUsed, c.Base); diff != "" {
				t.Errorf("Resolve(%q).Base (-want +got):\n%s", tt.want, diff)
			}
		})
	}
}

// TestResolveUnknownNames checks that every unknown name asked for is
// reported, not only the first.
func TestResolveUnknownNames(t *testing.T) {
	_, err := Resolve(archive("python3:"), []string{"pyhton3", "python3", "povary"}, nil)
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Resolve with two unknown names = %v, want the errors of both", err)
	}
	var got []string
	for _, e := range joined.Unwrap() {
		var u *UnknownError
		if errors.As(e, &u) {
			got = append(got, u.Name)
		}
	}
	if diff := cmp.Diff([]string{"pyhton3", "povary"}, got); diff != "" {
		t.Errorf("unknown names (-want +got):\n%s", diff)
	}
}
