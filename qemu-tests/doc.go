// Package qemutests holds drift's VM-tier scenario tests: they boot the real
// image (from $DRIFT_IMAGE_DIR, default ../out) in QEMU with package lab and
// wait on the nodes' "drift: " console events. They run only with
// DRIFT_QEMU_TESTS=1 (make test does that after building the image).
package qemutests
