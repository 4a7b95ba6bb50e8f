package boot

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// NIC is a physical network interface.
type NIC struct {
	Name  string
	Index int
	MAC   net.HardwareAddr
}

// PhysicalNICs lists the wired Ethernet interfaces backed by a device
// (not lo, bridges, veth or tunnels), in ifindex order.
func PhysicalNICs(sysDir string) ([]NIC, error) {
	dirs, err := filepath.Glob(filepath.Join(sysDir, "class", "net", "*"))
	if err != nil {
		return nil, err
	}
	var nics []NIC
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "device")); err != nil {
			continue // virtual
		}
		if _, err := os.Stat(filepath.Join(d, "wireless")); err == nil {
			continue
		}
		if readTrim(filepath.Join(d, "type")) != "1" { // ARPHRD_ETHER
			continue
		}
		mac, err := net.ParseMAC(readTrim(filepath.Join(d, "address")))
		if err != nil || len(mac) != 6 {
			continue
		}
		idx, _ := strconv.Atoi(readTrim(filepath.Join(d, "ifindex")))
		nics = append(nics, NIC{Name: filepath.Base(d), Index: idx, MAC: mac})
	}
	sort.Slice(nics, func(i, j int) bool { return nics[i].Index < nics[j].Index })
	return nics, nil
}

func readTrim(p string) string {
	b, _ := os.ReadFile(p)
	return strings.TrimSpace(string(b))
}

// NodeName is the host name of a node whose first NIC has mac:
// "drift-" and the MAC's last three bytes in hex.
func NodeName(mac net.HardwareAddr) string {
	if len(mac) < 3 {
		return RandomNodeName()
	}
	m := mac[len(mac)-3:]
	return fmt.Sprintf("drift-%02x%02x%02x", m[0], m[1], m[2])
}

// RandomNodeName names a node that has no NIC.
func RandomNodeName() string {
	var b [3]byte
	rand.Read(b[:])
	return NodeName(net.HardwareAddr(b[:]))
}
