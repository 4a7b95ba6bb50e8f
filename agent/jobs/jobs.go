// Package jobs runs drift's jobs: programs started in the pool that may
// move between nodes while they run. A job runs in its own PID namespace
// and session, behind a small init (jobinit.Run, in drift-job), with its standard streams
// on pipes held by the agent of the node it runs on (its runner). The
// agent of the node it was started from (its home, openMosix's deputy)
// keeps the job's record and relays its terminal: the client of
// `drift run` or `drift attach` talks to the home, and the home to
// whichever node runs the job now, over the agents' authenticated API.
//
// A job's life on one node is a stint; each stint streams the job's
// output to the home with an epoch number. When the job moves, the old
// stint drains what the job wrote before it was frozen and ends, and the
// new stint's output is held until then, so the output stays in order
// with nothing lost and nothing repeated.
package jobs

import (
	"fmt"
	"strings"
)

// NodePath is the PATH a job gets unless its spec sets one: Debian's
// order, so the image's C programs (busybox's applets in /usr/bin, the
// Debian packages it was built with) come before u-root's Go tools in
// /bbin, which open /dev/kmsg and so pin a job to its node.
const NodePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bbin"

// newID makes a job id for a home node.
func newID(home string, n int) string {
	return fmt.Sprintf("%s-%d", strings.TrimPrefix(home, "drift-"), n)
}
