package lab

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseReady(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Ready
		ok   bool
	}{
		{
			name: "full",
			line: "drift: ready node=drift-d1ab01 addr=10.0.2.15 role=head version=v0.1.0\r",
			want: Ready{Name: "drift-d1ab01", Addr: "10.0.2.15", Role: "head", Version: "v0.1.0", Line: "drift: ready node=drift-d1ab01 addr=10.0.2.15 role=head version=v0.1.0"},
			ok:   true,
		},
		{
			name: "no address yet",
			line: "drift: ready node=drift-d1ab02 addr=none role=worker version=dev",
			want: Ready{Name: "drift-d1ab02", Addr: "none", Role: "worker", Version: "dev", Line: "drift: ready node=drift-d1ab02 addr=none role=worker version=dev"},
			ok:   true,
		},
		{
			name: "after kernel noise, unknown keys",
			line: "[    3.1] random: crng init donedrift: ready node=n1 addr=none role=head version=x cores=2",
			want: Ready{Name: "n1", Addr: "none", Role: "head", Version: "x", Line: "drift: ready node=n1 addr=none role=head version=x cores=2"},
			ok:   true,
		},
		{name: "other event", line: "drift: peers=3", ok: false},
		{name: "no node name", line: "drift: ready addr=none role=head", ok: false},
		{name: "empty", line: "", ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseReady(tt.line)
			if ok != tt.ok {
				t.Fatalf("ParseReady(%q) ok = %v, want %v", tt.line, ok, tt.ok)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseReady(%q) mismatch (-want +got):\n%s", tt.line, diff)
			}
		})
	}
}

func TestNodeMAC(t *testing.T) {
	tests := []struct {
		id   string
		n    int
		want string
		host string
	}{
		{"ab12cd34", 1, "52:54:00:d1:ab:01", "drift-d1ab01"},
		{"ab12cd34", 3, "52:54:00:d1:ab:03", "drift-d1ab03"},
		{"00ffffff", 250, "52:54:00:d1:00:fa", "drift-d100fa"},
		{"not hex", 2, "52:54:00:d1:00:02", "drift-d10002"},
	}
	for _, tt := range tests {
		if got := NodeMAC(tt.id, tt.n); got != tt.want {
			t.Errorf("NodeMAC(%q, %d) = %q, want %q", tt.id, tt.n, got, tt.want)
		}
		if got := NodeHostname(tt.want); got != tt.host {
			t.Errorf("NodeHostname(%q) = %q, want %q", tt.want, got, tt.host)
		}
	}
}

func TestLabIDStable(t *testing.T) {
	dir := t.TempDir()
	a, b := labID(dir), labID(dir+"/")
	if a != b || len(a) != 8 {
		t.Errorf("labID(%q) = %q, labID with slash = %q; want equal, 8 hex digits", dir, a, b)
	}
	if other := labID(filepath.Join(dir, "x")); other == a {
		t.Errorf("labID of two directories both = %q, want different", a)
	}
	if ns := NetNSName(dir); ns != "drift-lab-"+a {
		t.Errorf("NetNSName(%q) = %q, want drift-lab-%s", dir, ns, a)
	}
}

func TestResolveNode(t *testing.T) {
	names := map[int]string{1: "drift-d1ab01", 3: "drift-d1ab03"}
	tests := []struct {
		ref     string
		want    int
		wantErr string
	}{
		{"1", 1, ""},
		{"node3", 3, ""},
		{"drift-d1ab03", 3, ""},
		{"drift-d1ab01", 1, ""},
		{"4", 0, "nodes 1 to 3"},
		{"0", 0, "nodes 1 to 3"},
		{"drift-d1ab02", 0, `no node named "drift-d1ab02"`},
		{"", 0, "no node named"},
	}
	for _, tt := range tests {
		got, err := resolveNode(tt.ref, 3, names)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolveNode(%q) = %d, %v; want error containing %q", tt.ref, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolveNode(%q) = %d, %v; want %d", tt.ref, got, err, tt.want)
		}
	}
}

func TestKernelAppend(t *testing.T) {
	tests := []struct {
		base   string
		n      int
		noHead bool
		extra  []string
		want   string
	}{
		{"console=ttyS0 quiet", 1, false, nil, "console=ttyS0 quiet drift.role=head panic=-1 drift.lab=1"},
		{"console=ttyS0  quiet ", 2, false, nil, "console=ttyS0 quiet drift.role=worker panic=-1 drift.lab=1"},
		{"console=ttyS0", 3, false, []string{"drift.dhcp=off"}, "console=ttyS0 drift.role=worker panic=-1 drift.lab=1 drift.dhcp=off"},
		{"console=ttyS0", 1, true, nil, "console=ttyS0 drift.role=worker panic=-1 drift.lab=1"},
		{"console=ttyS0", 4, false, []string{"drift.key=ab", "x=1"}, "console=ttyS0 drift.role=worker panic=-1 drift.lab=1 drift.key=ab x=1"},
	}
	for _, tt := range tests {
		if got := kernelAppend(tt.base, nodeRole(tt.n, tt.noHead), tt.extra); got != tt.want {
			t.Errorf("kernelAppend(%q, node %d, noHead %v, %q) = %q, want %q", tt.base, tt.n, tt.noHead, tt.extra, got, tt.want)
		}
	}
}

func TestVMArgs(t *testing.T) {
	base := vmSpec{
		Node: 2, Accel: AccelTCG, MemoryMB: 512, NIC: NICVirtio,
		MAC: "52:54:00:d1:ab:02", Tap: "tap2",
		ConsoleSock: "/s/node2.console.sock", ConsoleLog: "/s/node2.console.log",
		PortSock: "/s/node2.port.sock", QMPSock: "/s/node2.qmp.sock", PIDFile: "/s/node2.pid",
	}
	common := "-name drift-node2,debug-threads=on -nodefaults -machine pc -accel tcg -smp 1 -cpu qemu64,+rdrand -m 512 " +
		"-display none -vga none -monitor none -no-reboot -pidfile /s/node2.pid " +
		"-chardev socket,id=qmp,path=/s/node2.qmp.sock,server=on,wait=off -mon chardev=qmp,mode=control " +
		"-chardev socket,id=con,path=/s/node2.console.sock,server=on,wait=off,logfile=/s/node2.console.log -serial chardev:con " +
		"-device virtio-serial-pci,id=vser0 -chardev socket,id=lab,path=/s/node2.port.sock,server=on,wait=off " +
		"-device virtserialport,bus=vser0.0,chardev=lab,name=org.driftcluster.lab "
	tests := []struct {
		name   string
		modify func(*vmSpec)
		want   string
	}{
		{
			name: "kernel virtio",
			modify: func(s *vmSpec) {
				s.Boot, s.Kernel, s.Initrd, s.Append = BootKernel, "/img/vmlinuz", "/img/initramfs.cpio.zst", "console=ttyS0 drift.role=worker"
			},
			want: common + "-netdev tap,id=net0,ifname=tap2,script=no,downscript=no -device virtio-net-pci,netdev=net0,mac=52:54:00:d1:ab:02 " +
				"-kernel /img/vmlinuz -initrd /img/initramfs.cpio.zst -append 'console=ttyS0 drift.role=worker'",
		},
		{
			name:   "iso e1000",
			modify: func(s *vmSpec) { s.Boot, s.NIC, s.ISO = BootISO, NICE1000, "/img/drift.iso" },
			want: common + "-netdev tap,id=net0,ifname=tap2,script=no,downscript=no -device e1000,netdev=net0,mac=52:54:00:d1:ab:02 " +
				"-drive if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=/img/drift.iso -device ide-cd,bus=ide.1,drive=cd0,bootindex=1",
		},
		{
			name: "iso uefi",
			modify: func(s *vmSpec) {
				s.Boot, s.ISO, s.OVMFCode, s.OVMFVars = BootISOUEFI, "/img/drift.iso", "/fw/OVMF_CODE_4M.fd", "/s/node2.OVMF_VARS.fd"
			},
			want: common + "-netdev tap,id=net0,ifname=tap2,script=no,downscript=no -device virtio-net-pci,netdev=net0,mac=52:54:00:d1:ab:02 " +
				"-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/OVMF_CODE_4M.fd -drive if=pflash,format=raw,unit=1,file=/s/node2.OVMF_VARS.fd " +
				"-drive if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=/img/drift.iso -device ide-cd,bus=ide.1,drive=cd0,bootindex=1",
		},
		{
			name:   "usb, no network, kvm",
			modify: func(s *vmSpec) { s.Boot, s.USBDisk, s.Tap, s.Accel = BootUSB, "/s/node2.usb.img", "", AccelKVM },
			want: strings.Replace(common, "-accel tcg", "-accel kvm", 1) +
				"-device qemu-xhci,id=xhci -drive if=none,id=usbdisk,format=raw,file=/s/node2.usb.img -device usb-storage,bus=xhci.0,drive=usbdisk,bootindex=1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.modify(&s)
			got := shellQuote(s.args())
			if diff := cmp.Diff(strings.Fields(tt.want), strings.Fields(got)); diff != "" {
				t.Errorf("args mismatch (-want +got):\n%s\ngot: %s", diff, got)
			}
		})
	}
}

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"qemu", "-append", "a b", "it's", "", "x=y,z"})
	want := `qemu -append 'a b' 'it'\''s' '' x=y,z`
	if got != want {
		t.Errorf("shellQuote = %s, want %s", got, want)
	}
}

func TestParseFlags(t *testing.T) {
	for _, s := range []string{"kernel", "iso", "iso-uefi", "usb"} {
		if b, err := ParseBoot(s); err != nil || string(b) != s {
			t.Errorf("ParseBoot(%q) = %q, %v", s, b, err)
		}
	}
	if _, err := ParseBoot("pxe"); err == nil {
		t.Errorf("ParseBoot(pxe) = nil error, want one")
	}
	if n, err := ParseNIC("virtio-net-pci"); err != nil || n != NICVirtio {
		t.Errorf("ParseNIC(virtio-net-pci) = %q, %v", n, err)
	}
	if n, err := ParseNIC("rtl8139"); err != nil || n != NICRTL8139 {
		t.Errorf("ParseNIC(rtl8139) = %q, %v", n, err)
	}
	if _, err := ParseNIC("ne2k_pci"); err == nil {
		t.Errorf("ParseNIC(ne2k_pci) = nil error, want one")
	}
}

// TestWaitLine follows a log that another goroutine appends to, the way
// QEMU writes a console log.
func TestWaitLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.log")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(50 * time.Millisecond) // the file does not exist yet when the wait starts
		f, _ := os.Create(path)
		defer f.Close()
		for _, chunk := range []string{"SeaBIOS\r\n", "[ 1.0] Linux\r\ndrift: rea", "dy node=drift-d1ab01 addr=none role=head version=v1\r\nafter\r\n"} {
			f.WriteString(chunk)
			time.Sleep(30 * time.Millisecond)
		}
	}()
	line, off, err := waitLine(ctx, path, 0, ReadyRE, nil)
	<-done
	if err != nil {
		t.Fatalf("waitLine: %v", err)
	}
	if want := "drift: ready node=drift-d1ab01 addr=none role=head version=v1"; line != want {
		t.Errorf("waitLine = %q, want %q", line, want)
	}
	if _, _, err := waitLine(ctx, path, off, ReadyRE, func() bool { return false }); !errors.Is(err, ErrExited) {
		t.Errorf("waitLine past the ready line with the process gone = %v, want ErrExited", err)
	}
	short, cancel2 := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel2()
	if _, _, err := waitLine(short, path, 0, regexp.MustCompile("never"), nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("waitLine(never) = %v, want deadline exceeded", err)
	}
}

func TestTailLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	var b strings.Builder
	for i := range 40 {
		b.WriteString(strings.Repeat("x", i) + "\r\n")
	}
	os.WriteFile(path, []byte(b.String()), 0o644)
	got := strings.Split(tailLines(path, 30), "\n")
	if len(got) != 30 || got[29] != strings.Repeat("x", 39) {
		t.Errorf("tailLines(40 lines, 30) = %d lines ending %q", len(got), got[len(got)-1])
	}
	if got := tailLines(filepath.Join(t.TempDir(), "none"), 30); !strings.Contains(got, "no console output") {
		t.Errorf("tailLines(missing) = %q", got)
	}
}

func TestOpenNoLab(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir, nil)
	if !errors.Is(err, ErrNoLab) || !strings.Contains(err.Error(), "start one with drift-lab up") {
		t.Errorf("Open(empty dir) = %v, want ErrNoLab with a hint", err)
	}
}

func TestReproScript(t *testing.T) {
	got := reproScript("drift-lab-ab12cd34", 2, "ip netns exec drift-lab-ab12cd34 qemu-system-x86_64 -m 512")
	want := `# drift-lab node 2. Run the last line while the lab's network exists;
# after drift-lab down, recreate it first (as root):
#   ip netns add drift-lab-ab12cd34
#   ip -n drift-lab-ab12cd34 link set lo up
#   ip -n drift-lab-ab12cd34 link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0
#   ip -n drift-lab-ab12cd34 addr add 10.77.0.254/24 dev br0
#   ip -n drift-lab-ab12cd34 addr add 169.254.0.254/16 dev br0
#   ip -n drift-lab-ab12cd34 link set br0 up
#   ip -n drift-lab-ab12cd34 tuntap add dev tap2 mode tap
#   ip -n drift-lab-ab12cd34 link set tap2 master br0 up
# and remove it afterwards with: ip netns del drift-lab-ab12cd34
ip netns exec drift-lab-ab12cd34 qemu-system-x86_64 -m 512
`
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reproScript mismatch (-want +got):\n%s", diff)
	}
}

func TestStartWithoutQEMU(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background(), Config{StateDir: t.TempDir(), Image: Image{Kernel: "k", Initramfs: "i"}})
	if !errors.Is(err, ErrNoQEMU) || !strings.Contains(err.Error(), "apt-get install qemu-system-x86") {
		t.Errorf("Start without qemu on PATH = %v, want ErrNoQEMU telling how to install it", err)
	}
}

func TestStartWithoutOVMF(t *testing.T) {
	if _, err := lookQEMU(""); err != nil {
		t.Skip(err)
	}
	_, err := Start(context.Background(), Config{StateDir: t.TempDir(), Boot: BootISOUEFI, OVMFDir: t.TempDir(), Image: Image{ISO: "x.iso"}})
	if !errors.Is(err, ErrNoOVMF) || !strings.Contains(err.Error(), "apt-get install ovmf") {
		t.Errorf("Start(iso-uefi) without OVMF = %v, want ErrNoOVMF telling how to install it", err)
	}
}

func TestConcatFiles(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	os.WriteFile(a, []byte("12345"), 0o644)
	os.WriteFile(b, []byte("678"), 0o644)
	out := filepath.Join(dir, "out")
	if err := concatFiles(out, a, b); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(out)
	if want := "12345\x00\x00\x00678\x00"; string(got) != want {
		t.Errorf("concatFiles = %q, want %q (each file padded to 4 bytes)", got, want)
	}
}
