package debpkg

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRelations(t *testing.T) {
	tests := []struct {
		field string
		want  []Relation
	}{
		{field: "", want: nil},
		{field: "libc6 (>= 2.34)", want: []Relation{{"libc6"}}},
		{field: "python3:any, libbsd0 (>= 0.6.0)", want: []Relation{{"python3"}, {"libbsd0"}}},
		{field: "libgcc-s1 | libgcc1, default-mta | mail-transport-agent", want: []Relation{{"libgcc-s1", "libgcc1"}, {"default-mta", "mail-transport-agent"}}},
		{field: "media-types|mime-support", want: []Relation{{"media-types", "mime-support"}}},
		{field: "foo [amd64] <!nocheck>, bar:amd64 (= 1:2.0-1) [!i386]", want: []Relation{{"foo"}, {"bar"}}},
		{field: "perl:any (>= 5.36), ,", want: []Relation{{"perl"}}},
	}
	for _, tt := range tests {
		t.Run(tt.field, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseRelations(tt.field)); diff != "" {
				t.Errorf("ParseRelations(%q) (-want +got):\n%s", tt.field, diff)
			}
		})
	}
}

func TestParseRecords(t *testing.T) {
	in := `Package: python3-minimal
Source: python3-defaults
Version: 3.11.2-1+b1
Installed-Size: 111
Architecture: amd64
Multi-Arch: allowed
Depends: dpkg (>= 1.13.20)
Pre-Depends: python3.11-minimal (>= 3.11.2-1~)
Description: minimal subset of the Python language (default python3 version)
 This package contains the interpreter and some essential modules.  It's used
 in the boot process for some basic tasks.

Package: mawk
Version: 1.3.4.20200120-3.1
Architecture: amd64
Provides: awk
Depends: libc6 (>= 2.34),
 libtinfo6
Essential: no

Package: dpkg
Essential: yes
Version: 1.21.22
Architecture: amd64
Provides: dpkg-dev (= 1.0), update-alternatives
Tag: admin::package-management,
 role::program
`
	got, err := ParseRecords(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{Package: "python3-minimal", Version: "3.11.2-1+b1", Architecture: "amd64", MultiArch: "allowed",
			Depends: []Relation{{"dpkg"}}, PreDepends: []Relation{{"python3.11-minimal"}}},
		{Package: "mawk", Version: "1.3.4.20200120-3.1", Architecture: "amd64", Provides: []string{"awk"},
			Depends: []Relation{{"libc6"}, {"libtinfo6"}}},
		{Package: "dpkg", Version: "1.21.22", Architecture: "amd64", Essential: true, Provides: []string{"dpkg-dev", "update-alternatives"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseRecords (-want +got):\n%s", diff)
	}
}
