package debpkg

import (
	"os"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseAlternatives(t *testing.T) {
	read := func(name string) string {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	awkSlaves := func(bin string) []Slave {
		return []Slave{
			{Link: "/usr/share/man/man1/awk.1.gz", Name: "awk.1.gz", Path: "/usr/share/man/man1/" + bin + ".1.gz"},
			{Link: "/usr/bin/nawk", Name: "nawk", Path: "/usr/bin/" + bin},
			{Link: "/usr/share/man/man1/nawk.1.gz", Name: "nawk.1.gz", Path: "/usr/share/man/man1/" + bin + ".1.gz"},
		}
	}
	tests := []struct {
		name        string
		script      string
		want        []Alternative
		wantSkipped int
	}{
		{
			// Captured from gawk 1:5.2.1-2 (Debian 12): a call with
			// --quiet first, continued over four lines, then a loop.
			name:   "gawk postinst",
			script: read("gawk.postinst"),
			want:   []Alternative{{Link: "/usr/bin/awk", Name: "awk", Path: "/usr/bin/gawk", Priority: 10, Slaves: awkSlaves("gawk")}},
		},
		{
			// Captured from mawk 1.3.4.20200120-3.1 (Debian 12): the
			// debhelper snippet inside an if.
			name:   "mawk postinst",
			script: read("mawk.postinst"),
			want:   []Alternative{{Link: "/usr/bin/awk", Name: "awk", Path: "/usr/bin/mawk", Priority: 5, Slaves: awkSlaves("mawk")}},
		},
		{
			name:   "quotes, two calls on one line, comments",
			script: "# update-alternatives --install /usr/bin/no no /no 1\nupdate-alternatives --install '/usr/bin/x' \"x\" /usr/bin/x.a 20 && /usr/bin/update-alternatives --install /usr/bin/y y /usr/bin/y.b 30 # done\n",
			want: []Alternative{
				{Link: "/usr/bin/x", Name: "x", Path: "/usr/bin/x.a", Priority: 20},
				{Link: "/usr/bin/y", Name: "y", Path: "/usr/bin/y.b", Priority: 30},
			},
		},
		{
			name:        "shell variables cannot be known",
			script:      "for i in java keytool; do\n  update-alternatives --install /usr/bin/$i $i $basedir/bin/$i $priority\ndone\nupdate-alternatives --install /usr/bin/rmid rmid /usr/lib/jvm/bin/rmid $prio\n",
			wantSkipped: 2,
		},
		{
			name:   "other update-alternatives commands are not installs",
			script: "update-alternatives --remove awk /usr/bin/gawk\nupdate-alternatives --set editor /usr/bin/vim.nox\n",
		},
		{
			name:        "too few arguments",
			script:      "update-alternatives --install /usr/bin/x x /usr/bin/x.a\n",
			wantSkipped: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped := ParseAlternatives([]byte(tt.script))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseAlternatives (-want +got):\n%s", diff)
			}
			if skipped != tt.wantSkipped {
				t.Errorf("ParseAlternatives skipped %d calls, want %d", skipped, tt.wantSkipped)
			}
		})
	}
}

func TestChoose(t *testing.T) {
	gawk := Alternative{Link: "/usr/bin/awk", Name: "awk", Path: "/usr/bin/gawk", Priority: 10, Package: "gawk"}
	mawk := Alternative{Link: "/usr/bin/awk", Name: "awk", Path: "/usr/bin/mawk", Priority: 5, Package: "mawk"}
	vi := Alternative{Link: "/usr/bin/vi", Name: "vi", Path: "/usr/bin/vim.basic", Priority: 30}
	vi2 := Alternative{Link: "/usr/bin/vi", Name: "vi", Path: "/usr/bin/vim.tiny", Priority: 30}
	tests := []struct {
		name string
		in   []Alternative
		want []Alternative
	}{
		{name: "highest priority wins", in: []Alternative{mawk, gawk}, want: []Alternative{gawk}},
		{name: "order does not matter", in: []Alternative{gawk, mawk}, want: []Alternative{gawk}},
		{name: "equal priority: first wins; sorted by name", in: []Alternative{vi, mawk, vi2}, want: []Alternative{mawk, vi}},
		{name: "none", in: nil, want: []Alternative{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Choose(tt.in)); diff != "" {
				t.Errorf("Choose (-want +got):\n%s", diff)
			}
		})
	}
}
