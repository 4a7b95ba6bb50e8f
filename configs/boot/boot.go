// Package boot renders drift's boot-loader files from the templates beside
// it: the BIOS menu (isolinux.cfg), the UEFI menu (grub.cfg) and the iPXE
// script that network-boots workers from the head (boot.ipxe). drift-image
// writes them into the ISO and the PXE tree; the head's netboot service can
// render the iPXE script with its own address.
package boot

import (
	"bytes"
	"embed"
	"fmt"
	"text/template"
	"time"
)

//go:embed *.tmpl
var files embed.FS

var templates = template.Must(template.ParseFS(files, "*.tmpl"))

// Entry is one boot menu entry.
type Entry struct {
	Label   string // isolinux label, a single word, e.g. "node"
	Title   string // what the menu shows, e.g. "drift node"
	Cmdline string // the complete kernel command line
}

// Menu is what a boot menu needs. The first entry is the default.
type Menu struct {
	Version   string        // drift version, shown in the BIOS menu title
	Kernel    string        // absolute path of the kernel on the boot medium, e.g. "/boot/vmlinuz"
	Initramfs string        // absolute path of the initramfs on the boot medium
	Key       string        // absolute path of the archive holding only the cluster key, loaded before Initramfs (the kernel reads an uncompressed archive then a compressed one); "": none
	Marker    string        // absolute path of a file only this medium holds; GRUB finds its root by it
	Timeout   time.Duration // before the default entry boots; rounded down to 0.1 s (BIOS) and 1 s (UEFI)
	Entries   []Entry
}

// TimeoutTenths is the timeout in isolinux's unit.
func (m Menu) TimeoutTenths() int64 { return int64(m.Timeout / (100 * time.Millisecond)) }

// TimeoutSeconds is the timeout in GRUB's unit.
func (m Menu) TimeoutSeconds() int64 { return int64(m.Timeout / time.Second) }

// StandardEntries returns drift's two menu entries on the base command line
// cmdline: "drift node" (the default) and "drift head".
func StandardEntries(cmdline string) []Entry {
	return []Entry{
		{Label: "node", Title: "drift node", Cmdline: cmdline},
		{Label: "head", Title: "drift head", Cmdline: cmdline + " drift.role=head"},
	}
}

// IPXE is what the network-boot script needs.
type IPXE struct {
	BaseURL   string // where the head serves the files, e.g. "http://${next-server}" (iPXE expands ${...})
	Kernel    string // file name under BaseURL, e.g. "vmlinuz"
	Initramfs string // file name under BaseURL
	Cmdline   string // the complete kernel command line
}

// Isolinux renders isolinux.cfg.
func Isolinux(m Menu) ([]byte, error) { return render("isolinux.cfg.tmpl", m) }

// GRUB renders grub.cfg.
func GRUB(m Menu) ([]byte, error) { return render("grub.cfg.tmpl", m) }

// IPXEScript renders boot.ipxe.
func IPXEScript(s IPXE) ([]byte, error) { return render("boot.ipxe.tmpl", s) }

func render(name string, data any) ([]byte, error) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		return nil, fmt.Errorf("render %s: %w", name, err)
	}
	return b.Bytes(), nil
}
