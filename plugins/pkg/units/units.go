// Package units holds the value types of ferry's configuration that
// plugins share with it: Duration ("10s") and Size ("32KiB"). Each
// implements encoding.TextUnmarshaler, so a bad value fails inside the
// TOML decoder and keeps its FILE:LINE:COL position:
//
//	type Options struct {
//		Window   units.Duration `toml:"window"`    // "10s"
//		MaxBytes units.Size     `toml:"max_bytes"` // "4KiB" or 4096
//	}
//	...
//	time.Sleep(opts.Window.D())
//
// It depends on the standard library only: package config builds on it,
// and a plugin uses it without importing config's loader. It does not
// check ranges; a plugin validates its own limits.
package units

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time span written as a string with a unit: "10s", "1m30s",
// "250ms". It must not be negative. The integer 0 is accepted as "0s"; other
// bare numbers are rejected because their unit would be a guess.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// String formats d like time.Duration does ("1m30s").
func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalText parses a duration such as "10s".
func (d *Duration) UnmarshalText(text []byte) error {
	s := string(text)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("invalid duration %q: want a number with a unit (ns, us, ms, s, m, h), like \"10s\"", s)
	}
	if v < 0 {
		return fmt.Errorf("invalid duration %q: must not be negative", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText formats d like String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Size is a number of bytes, written as a string with an optional unit or as
// a TOML integer: "512B", "32KiB", "64KB", "1MiB", 4096. KiB, MiB, GiB, TiB
// and K, M, G, T are powers of 1024; KB, MB, GB, TB are powers of 1000.
// Units are case-insensitive and may follow a space.
//
// A negative TOML integer is stored by the TOML decoder without calling
// UnmarshalText; config.Load rejects it, and so does a plugin's decode
// through config.PluginConfig.Decode.
type Size int64

// Byte size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeUnits = map[string]int64{
	"": 1, "b": 1,
	"k": 1 << 10, "kib": 1 << 10, "kb": 1e3,
	"m": 1 << 20, "mib": 1 << 20, "mb": 1e6,
	"g": 1 << 30, "gib": 1 << 30, "gb": 1e9,
	"t": 1 << 40, "tib": 1 << 40, "tb": 1e12,
}

// ParseSize parses a size such as "32KiB" or "4096".
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.ToLower(strings.TrimSpace(t[i:]))
	if num == "" {
		if strings.HasPrefix(t, "-") {
			return 0, fmt.Errorf("invalid size %q: must not be negative", s)
		}
		return 0, fmt.Errorf("invalid size %q: want a whole number with an optional unit, like \"32KiB\" or \"4096\"", s)
	}
	mult, ok := sizeUnits[unit]
	if strings.HasPrefix(unit, ".") {
		return 0, fmt.Errorf("invalid size %q: want a whole number of bytes or units, like \"1536KiB\"", s)
	}
	if !ok {
		return 0, fmt.Errorf("invalid size %q: unknown unit %q (use B, KiB, MiB, GiB, KB, MB or GB)", s, strings.TrimSpace(t[i:]))
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q: too large", s)
	}
	return Size(n * mult), nil
}

// String formats s with the largest binary unit that divides it exactly:
// "32KiB", "1MiB", "1000B".
func (s Size) String() string {
	switch {
	case s != 0 && s%GiB == 0:
		return strconv.FormatInt(int64(s/GiB), 10) + "GiB"
	case s != 0 && s%MiB == 0:
		return strconv.FormatInt(int64(s/MiB), 10) + "MiB"
	case s != 0 && s%KiB == 0:
		return strconv.FormatInt(int64(s/KiB), 10) + "KiB"
	}
	return strconv.FormatInt(int64(s), 10) + "B"
}

// UnmarshalText parses a size such as "32KiB".
func (s *Size) UnmarshalText(text []byte) error {
	v, err := ParseSize(string(text))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// MarshalText formats s like String.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }
