package lab

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/driftcluster/drift/agent/labport"
)

// BootMode is how a node's firmware finds drift.
type BootMode string

const (
	BootKernel  BootMode = "kernel"   // QEMU loads the image's kernel and initramfs directly (-kernel/-initrd/-append)
	BootISO     BootMode = "iso"      // the ISO as a CD-ROM under SeaBIOS (isolinux)
	BootISOUEFI BootMode = "iso-uefi" // the ISO as a CD-ROM under OVMF (GRUB)
	BootUSB     BootMode = "usb"      // the ISO written to a raw disk on a USB stick (xHCI) under SeaBIOS
	BootUSBUEFI BootMode = "usb-uefi" // the ISO written to a raw disk on a USB stick (xHCI) under OVMF
)

// BootModes lists the valid boot modes, for flags and errors.
var BootModes = []BootMode{BootKernel, BootISO, BootISOUEFI, BootUSB, BootUSBUEFI}

// UEFI reports whether the mode boots under OVMF.
func (b BootMode) UEFI() bool { return b == BootISOUEFI || b == BootUSBUEFI }

// NIC is the model of a node's network card.
type NIC string

const (
	NICVirtio  NIC = "virtio"  // virtio-net-pci
	NICE1000   NIC = "e1000"   // Intel e1000 (82540EM)
	NICE1000E  NIC = "e1000e"  // Intel 82574L
	NICRTL8139 NIC = "rtl8139" // Realtek RTL8139
	NICVMXNET3 NIC = "vmxnet3" // VMware's paravirtual NIC
)

// nics are the NIC models a lab can give its nodes. QEMU 7.2 (Debian
// 12) has no igb.
var nics = []NIC{NICVirtio, NICE1000, NICE1000E, NICRTL8139, NICVMXNET3}

// model is the NIC's QEMU device.
func (n NIC) model() string {
	if n == NICVirtio || n == "" {
		return "virtio-net-pci"
	}
	return string(n)
}

// Accel is QEMU's accelerator.
type Accel string

const (
	AccelTCG Accel = "tcg" // software emulation, works everywhere
	AccelKVM Accel = "kvm" // hardware virtualisation, only where the probe boot succeeds
)

// vmSpec is everything that goes into one node's QEMU command line.
type vmSpec struct {
	Node     int
	Accel    Accel
	MemoryMB int
	Boot     BootMode
	NIC      NIC
	MAC      string
	Tap      string // tap device in the lab's namespace; "" for no network

	Kernel, Initrd, Append string // BootKernel
	ISO                    string // BootISO, BootISOUEFI
	USBDisk                string // BootUSB: raw disk image
	OVMFCode, OVMFVars     string // BootISOUEFI: firmware and this node's writable copy of the variables

	ConsoleSock, ConsoleLog string
	PortSock                string // the lab port's chardev socket
	QMPSock                 string
	PIDFile                 string
}

// args returns the QEMU arguments (without the program name) for s.
func (s vmSpec) args() []string {
	a := []string{
		"-name", "drift-node" + strconv.Itoa(s.Node) + ",debug-threads=on",
		"-nodefaults",
		"-machine", "pc",
		"-accel", string(s.Accel),
		"-smp", "1",
		// RDRAND, as on every x86-64 PC since 2012: the kernel seeds its
		// random generator from it at once. QEMU's default CPU model has
		// none, and a node's first Go program would wait about 1.3 s under
		// TCG for the kernel to gather entropy (memberlist reads
		// crypto/rand in its package init).
		"-cpu", "qemu64,+rdrand",
		"-m", strconv.Itoa(s.MemoryMB),
		"-display", "none",
		"-vga", "none",
		"-monitor", "none",
		"-no-reboot",
		"-pidfile", s.PIDFile,
		"-chardev", "socket,id=qmp,path=" + s.QMPSock + ",server=on,wait=off",
		"-mon", "chardev=qmp,mode=control",
		"-chardev", "socket,id=con,path=" + s.ConsoleSock + ",server=on,wait=off,logfile=" + s.ConsoleLog,
		"-serial", "chardev:con",
		"-device", "virtio-serial-pci,id=vser0",
		"-chardev", "socket,id=lab,path=" + s.PortSock + ",server=on,wait=off",
		"-device", "virtserialport,bus=vser0.0,chardev=lab,name=" + labport.PortName,
	}
	if s.Tap != "" {
		model := s.NIC.model()
		a = append(a,
			"-netdev", "tap,id=net0,ifname="+s.Tap+",script=no,downscript=no",
			"-device", model+",netdev=net0,mac="+s.MAC,
		)
	}
	switch s.Boot {
	case BootKernel:
		a = append(a, "-kernel", s.Kernel, "-initrd", s.Initrd, "-append", s.Append)
	case BootISO:
		a = append(a, cdromArgs(s.ISO)...)
	case BootISOUEFI:
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+s.OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+s.OVMFVars,
		)
		a = append(a, cdromArgs(s.ISO)...)
	case BootUSB:
		a = append(a, usbArgs(s.USBDisk)...)
	case BootUSBUEFI:
		a = append(a,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+s.OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+s.OVMFVars,
		)
		a = append(a, usbArgs(s.USBDisk)...)
	}
	return a
}

func usbArgs(disk string) []string {
	return []string{
		"-device", "qemu-xhci,id=xhci",
		"-drive", "if=none,id=usbdisk,format=raw,file=" + disk,
		"-device", "usb-storage,bus=xhci.0,drive=usbdisk,bootindex=1",
	}
}

func cdromArgs(iso string) []string {
	return []string{
		"-drive", "if=none,id=cd0,media=cdrom,readonly=on,format=raw,file=" + iso,
		"-device", "ide-cd,bus=ide.1,drive=cd0,bootindex=1",
	}
}

// nodeRole is node n's drift.role: node 1 is the head unless the lab has
// none.
func nodeRole(n int, noHead bool) string {
	if n == 1 && !noHead {
		return "head"
	}
	return "worker"
}

// LabArg opens the agent's exec port (agent/labport), which drift-lab
// and the tests drive; a head booted with it passes it on to the machines
// it network-boots.
const LabArg = "drift.lab=1"

// kernelAppend is a node's kernel command line in BootKernel mode: the
// image's base command line, the node's role, panic=-1 so a panic ends QEMU
// (with -no-reboot) instead of hanging until a timeout, then the caller's
// extra arguments, which may override any of these.
func kernelAppend(base, role string, extra []string) string {
	parts := strings.Fields(base)
	parts = append(parts, "drift.role="+role, "panic=-1", LabArg)
	parts = append(parts, extra...)
	return strings.Join(parts, " ")
}

// shellQuote renders argv as a line a POSIX shell reads back as argv.
func shellQuote(argv []string) string {
	q := make([]string, len(argv))
	for i, s := range argv {
		if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=,./:+@%") == "" {
			q[i] = s
			continue
		}
		q[i] = "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}

// ParseBoot returns the boot mode named s (a --boot flag value).
func ParseBoot(s string) (BootMode, error) {
	for _, b := range BootModes {
		if string(b) == s {
			return b, nil
		}
	}
	return "", fmt.Errorf("unknown boot mode %q (want one of %v)", s, BootModes)
}

// ParseNIC returns the NIC model named s (a --nic flag value).
func ParseNIC(s string) (NIC, error) {
	switch s {
	case "virtio", "virtio-net", "virtio-net-pci":
		return NICVirtio, nil
	}
	for _, n := range nics {
		if string(n) == s {
			return n, nil
		}
	}
	return "", fmt.Errorf("unknown NIC model %q (want one of %v)", s, nics)
}
