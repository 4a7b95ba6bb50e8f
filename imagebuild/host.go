package imagebuild

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
)

// hostTool returns the path of a program the build runs on the host, or
// an error naming the Debian package that provides it.
func hostTool(name, pkg string) (string, error) {
	p, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s not found: install the Debian package %s (apt-get install %s)", name, pkg, pkg)
	}
	return p, nil
}

// hostFile checks that a data file from a Debian package is on the host.
func hostFile(path, pkg string) (string, error) {
	if _, err := os.Stat(path); err != nil {
		return "", fmt.Errorf("%s not found: install the Debian package %s (apt-get install %s)", path, pkg, pkg)
	}
	return path, nil
}

// placeFile puts a copy of src (following symlinks: Debian's
// /usr/lib/ipxe/ipxe.efi is one) at dst: a hard link where it can, a copy
// where it must.
func placeFile(src, dst string) error {
	src, err := filepath.EvalSymlinks(src)
	if err != nil {
		return err
	}
	os.Remove(dst)
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	return copyFile(src, dst)
}

// copyFile copies src to dst with src's permission bits.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	fi, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
