package boot

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNodeName(t *testing.T) {
	mac, _ := net.ParseMAC("52:54:00:d1:0a:ff")
	if got := NodeName(mac); got != "drift-d10aff" {
		t.Errorf("NodeName(%s) = %q, want drift-d10aff", mac, got)
	}
	if got := NodeName(nil); !regexp.MustCompile(`^drift-[0-9a-f]{6}$`).MatchString(got) {
		t.Errorf("NodeName(nil) = %q, want drift-XXXXXX", got)
	}
}

func TestPhysicalNICs(t *testing.T) {
	sys := t.TempDir()
	add := func(name, typ, mac, idx string, device bool) {
		d := filepath.Join(sys, "class", "net", name)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "type"), []byte(typ+"\n"), 0o444)
		os.WriteFile(filepath.Join(d, "address"), []byte(mac+"\n"), 0o444)
		os.WriteFile(filepath.Join(d, "ifindex"), []byte(idx+"\n"), 0o444)
		if device {
			os.MkdirAll(filepath.Join(d, "device"), 0o755)
		}
	}
	add("lo", "772", "00:00:00:00:00:00", "1", false)
	add("eth1", "1", "52:54:00:00:00:02", "3", true)
	add("eth0", "1", "52:54:00:00:00:01", "2", true)
	add("br0", "1", "52:54:00:00:00:09", "4", false)
	nics, err := PhysicalNICs(sys)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nics {
		names = append(names, n.Name)
	}
	if diff := cmp.Diff([]string{"eth0", "eth1"}, names); diff != "" {
		t.Errorf("PhysicalNICs mismatch (-want +got):\n%s", diff)
	}
}
