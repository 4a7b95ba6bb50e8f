package nodeinfo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Wire format limits. An encoded Info never exceeds MaxSize bytes, the most
// memberlist accepts as node metadata (it panics above).
const (
	MaxSize    = 512
	MaxModel   = 96
	MaxRole    = 16
	MaxVersion = 64

	wireVersion = 1
)

// ErrMalformed reports metadata that cannot be decoded.
var ErrMalformed = errors.New("malformed node metadata")

// Encode returns the wire form of i. Strings longer than their limits are
// truncated (at a UTF-8 boundary) and numbers are clamped, so the result is
// always at most MaxSize bytes.
//
// Layout (big endian): version byte 1; cores u16; MHz u32; speed u32
// (thousandths); memTotal u64; memFree u64; runnable u16; load1 u32
// (hundredths); jobs u32; bootTime i64 (unix seconds, 0 unknown); apiPort
// u16; then three strings, each a length byte and bytes: model, role,
// version. Decoders ignore bytes after the last field they know.
func (i Info) Encode() []byte {
	b := make([]byte, 0, 64+MaxModel+MaxRole+MaxVersion)
	b = append(b, wireVersion)
	b = binary.BigEndian.AppendUint16(b, clampU16(i.Cores))
	b = binary.BigEndian.AppendUint32(b, clampU32(float64(i.MHz)))
	b = binary.BigEndian.AppendUint32(b, clampU32(i.Speed*1000))
	b = binary.BigEndian.AppendUint64(b, i.MemTotal)
	b = binary.BigEndian.AppendUint64(b, i.MemFree)
	b = binary.BigEndian.AppendUint16(b, clampU16(i.Runnable))
	b = binary.BigEndian.AppendUint32(b, clampU32(i.Load1*100))
	b = binary.BigEndian.AppendUint32(b, clampU32(float64(i.Jobs)))
	var boot int64
	if !i.BootTime.IsZero() {
		boot = i.BootTime.Unix()
	}
	b = binary.BigEndian.AppendUint64(b, uint64(boot))
	b = binary.BigEndian.AppendUint16(b, clampU16(i.APIPort))
	b = appendString(b, i.CPUModel, MaxModel)
	b = appendString(b, i.Role, MaxRole)
	b = appendString(b, i.Version, MaxVersion)
	var flags byte
	if i.Blocked {
		flags |= flagBlocked
	}
	if i.Draining {
		flags |= flagDraining
	}
	return append(b, flags)
}

// Flags, in the last byte (absent in older agents' metadata: none set).
const (
	flagBlocked byte = 1 << iota
	flagDraining
)

// Decode parses the wire form made by Encode. It never panics: anything
// short, of an unknown version or with strings past the end is ErrMalformed.
func Decode(b []byte) (Info, error) {
	d := decoder{b: b}
	if v := d.u8(); d.err == nil && v != wireVersion {
		return Info{}, fmt.Errorf("%w: wire version %d, want %d", ErrMalformed, v, wireVersion)
	}
	var i Info
	i.Cores = int(d.u16())
	i.MHz = int(d.u32())
	i.Speed = float64(d.u32()) / 1000
	i.MemTotal = d.u64()
	i.MemFree = d.u64()
	i.Runnable = int(d.u16())
	i.Load1 = float64(d.u32()) / 100
	i.Jobs = int(d.u32())
	if boot := int64(d.u64()); boot > 0 {
		i.BootTime = time.Unix(boot, 0)
	}
	i.APIPort = int(d.u16())
	i.CPUModel = d.str()
	i.Role = d.str()
	i.Version = d.str()
	if d.err == nil && len(d.b) > 0 {
		flags := d.u8()
		i.Blocked, i.Draining = flags&flagBlocked != 0, flags&flagDraining != 0
	}
	if d.err != nil {
		return Info{}, d.err
	}
	return i, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("%w: truncated", ErrMalformed)
		return nil
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) u8() byte {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (d *decoder) u16() uint16 {
	if p := d.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (d *decoder) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

func (d *decoder) str() string {
	n := d.u8()
	return string(d.take(int(n)))
}

func appendString(b []byte, s string, max int) []byte {
	s = Truncate(s, max)
	b = append(b, byte(len(s)))
	return append(b, s...)
}

// Truncate shortens s to at most max bytes without splitting a UTF-8 sequence.
func Truncate(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && s[cut]&0xC0 == 0x80 { // s[cut] continues a sequence: back up to its start
		cut--
	}
	return s[:cut]
}

func clampU16(v int) uint16 {
	return uint16(max(0, min(v, math.MaxUint16)))
}

func clampU32(v float64) uint32 {
	switch {
	case !(v > 0): // negative, zero or NaN
		return 0
	case v >= math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(math.Round(v))
}
