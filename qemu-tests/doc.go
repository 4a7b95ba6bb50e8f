// Package qemutests holds drift's VM-tier scenario tests: they boot the real
// image (from $DRIFT_IMAGE_DIR, default ../out) in QEMU with package lab and
// wait on the nodes' "drift: " console events. They run only with
// DRIFT_QEMU_TESTS=1 (make test does that after building the image).
//
// TestCluster boots one 3-node lab and runs on it, as steps in a fixed
// order, every scenario a plain 3-node lab serves, those that power nodes
// off or change the cluster for good last. The tests that need another lab
// (boot media, network boot, no head, an external NFS server, a node that
// never gets ready) boot their own. This is the only package whose tests
// boot VMs, and within it at most maxVMs run at once (a bigger lab runs
// alone), so that TCG guests never starve each other on the 2-core machines
// the tests run on.
package qemutests
