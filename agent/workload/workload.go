// Package workload holds the small programs drift ships for tests and
// demos of migration and balancing: a counter that prints numbered lines
// at a steady rate, a CPU burner, and a memory toucher with a set resident
// size and dirty rate. They are plain processes with nothing CRIU cannot
// checkpoint, and they say what they do on stdout so a test can check
// that nothing was lost or repeated across a move.
package workload

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Counter prints "1", "2", ... up to n (0: forever), one line per
// interval, on w, and returns when it has printed the last one.
func Counter(ctx context.Context, w io.Writer, n int, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for i := 1; n == 0 || i <= n; i++ {
		if _, err := fmt.Fprintln(w, i); err != nil {
			return fmt.Errorf("write line %d: %w", i, err)
		}
		if n != 0 && i == n {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// Burn spins one core for d (0: until ctx ends) and returns the number of
// loop iterations it made, a measure of the CPU it got.
func Burn(ctx context.Context, d time.Duration) uint64 {
	var n uint64
	var deadline time.Time
	if d > 0 {
		deadline = time.Now().Add(d)
	}
	x := uint64(88172645463325252)
	for {
		for range 1 << 16 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		n += 1 << 16
		if ctx.Err() != nil || (!deadline.IsZero() && time.Now().After(deadline)) {
			sink = x
			return n
		}
	}
}

// Work burns a fixed amount of CPU: iterations loop rounds of Burn's
// inner loop. It is what a benchmark's equal CPU-bound jobs run, so that
// they finish after a set amount of work rather than a set time.
func Work(ctx context.Context, iterations uint64) error {
	x := uint64(88172645463325252)
	for i := uint64(0); i < iterations; i += 1 << 16 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		for range 1 << 16 {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
	}
	sink = x
	return nil
}

var sink uint64

// Touch holds rss bytes resident and writes to dirty bytes of them per
// second, spread over the whole area (one byte per 4 KiB page), until ctx
// ends. report, if not nil, is called once the memory is resident.
func Touch(ctx context.Context, rss, dirtyPerSec uint64, report func()) error {
	const page = 4096
	mem := make([]byte, rss)
	for i := 0; i < len(mem); i += page {
		mem[i] = 1
	}
	if report != nil {
		report()
	}
	pages := max(len(mem)/page, 1)
	perTick := int(dirtyPerSec / page / 10)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	next := 0
	stride := 7919 // a prime: scattered, covering every page in time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
		for range perTick {
			next = (next + stride) % pages
			mem[next*page]++
		}
	}
}

// ParseSize reads a size as the workloads take it: bytes, or a number
// with a K, M or G suffix (64M, 1G).
func ParseSize(s string) (uint64, error) {
	mult, num := uint64(1), s
	for i, suffix := range []string{"K", "M", "G"} {
		if strings.HasSuffix(s, suffix) {
			mult, num = 1<<(10*(i+1)), strings.TrimSuffix(s, suffix)
		}
	}
	n, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: want a number with an optional K, M or G suffix", s)
	}
	return n * mult, nil
}

// Hold returns size bytes of memory with every page written, so that it
// stays resident (anonymous memory a migration has to copy).
func Hold(size uint64) []byte {
	b := make([]byte, size)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	return b
}
