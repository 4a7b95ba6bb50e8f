package modules

import (
	"slices"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		text string
		want []string
	}{
		{name: "empty", text: "", want: nil},
		{name: "comments and blanks", text: "# header\n\nvirtio_net\n  e1000  # Intel\n", want: []string{"virtio_net", "e1000"}},
		{name: "duplicates", text: "tun\nveth\ntun\n", want: []string{"tun", "veth"}},
		{name: "no trailing newline", text: "9p", want: []string{"9p"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Parse([]byte(tt.text)); !slices.Equal(got, tt.want) {
				t.Errorf("Parse(%q) = %q, want %q", tt.text, got, tt.want)
			}
		})
	}
}

func TestLists(t *testing.T) {
	all, err := Lists()
	if err != nil {
		t.Fatal(err)
	}
	required := map[string][]string{
		"nics.list":   {"virtio_net", "e1000", "e1000e", "igb", "igc", "ixgbe", "r8169", "tg3", "bnx2", "atl1c", "alx", "8139too", "vmxnet3"},
		"media.list":  {"sr_mod", "cdrom", "isofs", "usb-storage", "uas", "xhci_pci", "ahci", "nvme", "vfat", "virtio_blk", "virtio_scsi", "sd_mod"},
		"fs.list":     {"9p", "9pnet", "9pnet_virtio", "nfs", "nfsv3", "nfsv4", "overlay", "ext4", "xfs"},
		"virt.list":   {"virtio_console"},
		"criu.list":   {"netlink_diag", "inet_diag", "tcp_diag", "udp_diag", "unix_diag", "af_packet_diag", "nf_tables", "nfnetlink", "libcrc32c", "crc32c_generic", "tun", "veth"},
		"always.list": {"af_packet", "9p", "nfs", "overlay", "virtio_console", "button", "evdev"},
		Packages:      {"loop", "squashfs", "overlay"},
	}
	for list, mods := range required {
		t.Run(list, func(t *testing.T) {
			for _, m := range mods {
				if !slices.Contains(all[list], m) {
					t.Errorf("%s lacks %s", list, m)
				}
			}
		})
	}
	t.Run("always holds criu", func(t *testing.T) {
		for _, m := range all["criu.list"] {
			if !slices.Contains(all[Always], m) {
				t.Errorf("%s lacks %s from criu.list", Always, m)
			}
		}
	})
}
