package match

import (
	"fmt"
	"strconv"
	"strings"
)

// PortRange is a destination port ("443") or an inclusive range
// ("8000-8999"). Port 0 is not a destination and is refused. It implements
// encoding.TextUnmarshaler, so a config may write 443 or "443" (TOML
// integers reach UnmarshalText as their text).
type PortRange struct {
	Lo, Hi uint16
}

// ParsePortRange parses "443" or "8000-8999".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		hi = lo
	}
	a, errA := parsePort(lo)
	b, errB := parsePort(hi)
	switch {
	case errA != nil || errB != nil:
		return PortRange{}, fmt.Errorf("invalid port %q: want a port from 1 to 65535 or a range like \"8000-8999\"", s)
	case a > b:
		return PortRange{}, fmt.Errorf("invalid port range %q: %d is above %d", s, a, b)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port")
	}
	return uint16(n), nil
}

// String formats r as ParsePortRange reads it.
func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// Contains reports whether port is in r.
func (r PortRange) Contains(port uint16) bool { return r.Lo <= port && port <= r.Hi }

// UnmarshalText parses r with ParsePortRange.
func (r *PortRange) UnmarshalText(text []byte) error {
	v, err := ParsePortRange(string(text))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// MarshalText formats r like String.
func (r PortRange) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// Ports is a list of port ranges; a port matches when any range contains
// it.
type Ports []PortRange

// Contains reports whether port is in one of the ranges.
func (ps Ports) Contains(port uint16) bool {
	for _, r := range ps {
		if r.Contains(port) {
			return true
		}
	}
	return false
}
