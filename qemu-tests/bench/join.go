package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/driftcluster/drift/qemu-tests/lab"
)

// JoinConfig says what bench-join measures.
type JoinConfig struct {
	ImageDir string        // drift-image output (image.json); required
	Nodes    int           // lab size; 0: 3
	Timeout  time.Duration // for the lab to boot and converge; 0: 5 minutes
	Accel    lab.Accel     // "": lab.ResolveAccel, cached in the user cache directory
	Logger   *slog.Logger  // nil: discard
	// ModuleDir is where `go test ./agent/membership` runs; "": the
	// module of the current directory (go env GOMOD).
	ModuleDir string
}

// JoinResult is what one bench-join measured.
type JoinResult struct {
	Accel     lab.Accel
	Nodes     int
	Ready     time.Duration // first QEMU start to the last ready line
	Converged time.Duration // first QEMU start to every node listing all Nodes alive
	Converge  []Converge    // the in-process memberlist benchmark
}

// Converge is one size of BenchmarkConverge in agent/membership.
type Converge struct {
	Agents        int
	Seconds       float64 // until every agent lists all alive
	BytesPerNodeS float64 // gossip bytes per node per second once converged
	Failed        string  // why this size failed, as the benchmark said; "": it ran
}

// Join boots a lab of cfg.Nodes, measures how long until every node lists
// every other alive, stops the lab, then runs agent/membership's
// BenchmarkConverge (in-process agents on loopback).
func Join(ctx context.Context, cfg JoinConfig) (*JoinResult, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	img, log, err := prepare(cfg.ImageDir, cfg.Logger)
	if err != nil {
		return nil, err
	}
	res := &JoinResult{Nodes: cfg.Nodes}
	if res.Accel, err = resolveAccel(ctx, cfg.Accel, img, log); err != nil {
		return nil, err
	}
	if err := joinLab(ctx, cfg, img, log, res); err != nil {
		return nil, err
	}
	// A size that fails (did not converge) is reported as such beside the
	// others' figures; only a run that printed nothing at all is an error.
	out, err := runConvergeBench(ctx, cfg.ModuleDir)
	if res.Converge = ParseConverge(out); len(res.Converge) == 0 {
		return nil, fmt.Errorf("bench: BenchmarkConverge printed no figures (%v):\n%s", err, out)
	}
	return res, nil
}

func joinLab(ctx context.Context, cfg JoinConfig, img lab.Image, log *slog.Logger, res *JoinResult) error {
	work, err := os.MkdirTemp("", "djoin-")
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer os.RemoveAll(work)
	l, err := lab.Start(ctx, lab.Config{Image: img, StateDir: work, Nodes: cfg.Nodes, Accel: res.Accel, Logger: log, DieWithParent: true})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	defer l.Down(context.WithoutCancel(ctx))
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	first := l.StartedAt(1)
	nodes := make([]int, cfg.Nodes)
	for i := range nodes {
		nodes[i] = i + 1
		if t := l.StartedAt(i + 1); t.Before(first) {
			first = t
		}
	}
	if err := l.WaitReady(ctx, nil); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	res.Ready = time.Since(first)
	var names []string
	for _, n := range nodes {
		r, _ := l.Ready(n)
		names = append(names, r.Name)
	}
	if _, err := l.WaitMembers(ctx, nodes, lab.AllAlive(names...)); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	res.Converged = time.Since(first)
	return nil
}

// runConvergeBench runs BenchmarkConverge once per size and returns its
// output.
func runConvergeBench(ctx context.Context, dir string) (string, error) {
	if dir == "" {
		gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
		if err != nil || strings.TrimSpace(string(gomod)) == "" || strings.TrimSpace(string(gomod)) == os.DevNull {
			return "", fmt.Errorf("bench: find the drift module (run from the repository): %v", err)
		}
		dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "XXX", "-bench", "Converge", "-benchtime", "1x", "./agent/membership")
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("bench: %s: %w", cmd, err)
	}
	return out.String(), nil
}

// ParseConverge reads the figures of BenchmarkConverge from go test's
// output: lines such as
//
//	BenchmarkConverge/agents=50-2   1   2.31 s/converge   812.0 B/node/s
//
// and failed sizes, "--- FAIL: BenchmarkConverge/agents=200" followed by
// the benchmark's message.
func ParseConverge(out string) []Converge {
	var cs []Converge
	lines := strings.Split(out, "\n")
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == "---" && f[1] == "FAIL:" {
			if n, ok := convergeSize(f[2]); ok {
				why := "failed"
				if i+1 < len(lines) {
					why = strings.TrimSpace(lines[i+1])
				}
				cs = append(cs, Converge{Agents: n, Failed: why})
			}
			continue
		}
		if len(f) == 0 {
			continue
		}
		n, ok := convergeSize(f[0])
		if !ok {
			continue
		}
		c := Converge{Agents: n}
		for i := 1; i+1 < len(f); i++ {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			switch f[i+1] {
			case "s/converge":
				c.Seconds = v
			case "B/node/s":
				c.BytesPerNodeS = v
			}
		}
		cs = append(cs, c)
	}
	return cs
}

// convergeSize returns N from a benchmark name BenchmarkConverge/agents=N
// (with or without the -GOMAXPROCS suffix).
func convergeSize(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, "BenchmarkConverge/agents=")
	if !ok {
		return 0, false
	}
	rest, _, _ = strings.Cut(rest, "-")
	n, err := strconv.Atoi(rest)
	return n, err == nil
}

// Print writes the figures of r.
func (r *JoinResult) Print(w io.Writer) {
	fmt.Fprintf(w, "join, %d-node lab, kernel+initramfs, accel %s (from the first QEMU start):\n", r.Nodes, r.Accel)
	fmt.Fprintf(w, "  all ready             %6.2f s\n", r.Ready.Seconds())
	fmt.Fprintf(w, "  every node sees all %d %6.2f s\n", r.Nodes, r.Converged.Seconds())
	fmt.Fprintf(w, "memberlist convergence, in-process agents on loopback (agent/membership BenchmarkConverge):\n")
	for _, c := range r.Converge {
		if c.Failed != "" {
			fmt.Fprintf(w, "  %4d agents  FAILED: %.200s\n", c.Agents, c.Failed)
			continue
		}
		fmt.Fprintf(w, "  %4d agents  %7.2f s to converge  %8.0f gossip B/node/s\n", c.Agents, c.Seconds, c.BytesPerNodeS)
	}
}
