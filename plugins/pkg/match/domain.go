package match

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"ferry/plugins/pkg/safefile"
)

// DomainKind says which names a Domain pattern covers.
type DomainKind uint8

const (
	// Exact, written "example.com", matches that name only.
	Exact DomainKind = iota
	// Subdomains, written "*.example.com", matches names under the domain,
	// at any depth (a.example.com, a.b.example.com), but not example.com
	// itself.
	Subdomains
	// DomainAndSubdomains, written ".example.com" (squid's form), matches
	// example.com and every name under it.
	DomainAndSubdomains
)

// Domain is one destination name pattern: a name, "*.name" or ".name".
// Names are ASCII (IDNs in their xn-- form), compared case-insensitively,
// with a trailing dot ignored. The zero Domain is invalid.
type Domain struct {
	Name string // lower case, no wildcard, no trailing dot
	Kind DomainKind
}

// ParseDomain parses a pattern: "example.com", "*.example.com" or
// ".example.com". It refuses IP addresses (they are destinations for a
// prefix rule, not names), other wildcards and characters that cannot be
// in a host name.
func ParseDomain(s string) (Domain, error) {
	d := Domain{Kind: Exact}
	name := s
	switch {
	case strings.HasPrefix(name, "*."):
		d.Kind, name = Subdomains, name[2:]
	case strings.HasPrefix(name, "."):
		d.Kind, name = DomainAndSubdomains, name[1:]
	}
	n, err := checkName(name)
	if err != nil {
		return Domain{}, fmt.Errorf("invalid domain %q: %w", s, err)
	}
	d.Name = n
	return d, nil
}

// String formats d the way ParseDomain reads it.
func (d Domain) String() string {
	switch d.Kind {
	case Subdomains:
		return "*." + d.Name
	case DomainAndSubdomains:
		return "." + d.Name
	}
	return d.Name
}

// UnmarshalText parses a pattern, so that config decoders report a bad one
// at its position.
func (d *Domain) UnmarshalText(text []byte) error {
	v, err := ParseDomain(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText formats d like String.
func (d Domain) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// checkName validates and lower-cases a host name without wildcard: labels
// of letters, digits, '-' and '_' (found in real names), 1 to 63 bytes,
// 253 in all, one trailing dot allowed.
func checkName(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	switch {
	case s == "":
		return "", errors.New("empty name")
	case len(s) > 253:
		return "", errors.New("longer than 253 bytes")
	}
	if _, ok := ParseLiteral(s); ok {
		return "", errors.New("an IP address is not a domain: match it as a destination address (CIDR)")
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", errors.New("empty label")
			}
			label = 0
			continue
		case c == '*':
			return "", errors.New(`a wildcard is only allowed as a leading "*." label`)
		case c >= 0x80:
			return "", errors.New("non-ASCII name: write internationalized names in their xn-- form")
		case !isNameByte(c):
			return "", fmt.Errorf("character %q is not allowed in a host name", c)
		}
		label++
		if label > 63 {
			return "", errors.New("label longer than 63 bytes")
		}
	}
	if label == 0 {
		return "", errors.New("empty label")
	}
	return lower(s), nil
}

// ParseLiteral parses host as an IP literal (IPv4, or IPv6 with an
// optional zone); ok is false for names. Unlike netip.ParseAddr it does
// not allocate an error for names, which are the common case.
func ParseLiteral(host string) (a netip.Addr, ok bool) {
	if !strings.Contains(host, ":") {
		for i := 0; i < len(host); i++ {
			if c := host[i]; (c < '0' || c > '9') && c != '.' {
				return netip.Addr{}, false
			}
		}
	}
	a, err := netip.ParseAddr(host)
	return a, err == nil
}

func isNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// lower is strings.ToLower for ASCII, allocating only when s has upper
// case letters.
func lower(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(s)
		}
	}
	return s
}

// Flags stored per name in a Domains set.
const (
	flagExact uint8 = 1 << iota // the name itself matches
	flagSub                     // names under it match
)

// Domains is a set of Domain patterns. A lookup costs one hash lookup per
// label of the queried name, whatever the size of the set (20 to 50 ns);
// a million names take about 90 MB of heap (TestDomainsMillionMemory
// logs the numbers).
//
// The zero value is an empty set ready to use. Adding is not safe for
// concurrent use; once built, Match is.
type Domains struct {
	// m maps a name to its flags: flagExact for "name" and ".name",
	// flagSub for "*.name" and ".name".
	m map[string]uint8
}

// Add puts pattern d in the set.
func (s *Domains) Add(d Domain) {
	if s.m == nil {
		s.m = make(map[string]uint8)
	}
	var f uint8
	switch d.Kind {
	case Exact:
		f = flagExact
	case Subdomains:
		f = flagSub
	case DomainAndSubdomains:
		f = flagExact | flagSub
	}
	s.m[d.Name] |= f
}

// Len is the number of names in the set; "*.x" and "x" count as one.
func (s *Domains) Len() int {
	if s == nil {
		return 0
	}
	return len(s.m)
}

// Match reports whether host (a name as a client sent it: any case, maybe
// with a trailing dot) is covered by a pattern of the set. IP literals are
// not names and never match a valid pattern. A nil set matches nothing.
func (s *Domains) Match(host string) bool {
	if s == nil || len(s.m) == 0 {
		return false
	}
	host = lower(strings.TrimSuffix(host, "."))
	if s.m[host]&flagExact != 0 {
		return true
	}
	// One lookup per parent domain: a.b.example.com asks b.example.com,
	// example.com, com. The substrings share host's bytes.
	for i := 0; i < len(host); i++ {
		if host[i] == '.' && s.m[host[i+1:]]&flagSub != 0 {
			return true
		}
	}
	return false
}

// LoadFile adds the patterns listed in the file at path (see Load) and
// returns how many it read. Errors name the file and the line.
func (s *Domains) LoadFile(path string) (int, error) {
	data, err := safefile.ReadFile(path, safefile.MaxList)
	if err != nil {
		return 0, err
	}
	n, err := s.Load(bytes.NewReader(data))
	if err != nil {
		return n, fmt.Errorf("%s:%w", path, err)
	}
	return n, nil
}

// Load adds the patterns listed in r and returns how many it read. Each
// line holds one pattern ("example.com", "*.example.com",
// ".example.com"), or is a hosts-file line, an address followed by names
// ("0.0.0.0 ads.example tracker.example"), whose names are added as exact
// names. A '#' starts a comment; blank lines are skipped, and so are IP
// addresses in the names of a hosts-file line ("0.0.0.0 0.0.0.0" in some
// block lists). The first bad line stops the load with an error that
// reads "LINE: problem".
func (s *Domains) Load(r io.Reader) (int, error) {
	if s.m == nil {
		s.m = make(map[string]uint8)
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n, line := 0, 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if i := bytes.IndexByte(b, '#'); i >= 0 {
			b = b[:i]
		}
		first, rest := nextField(b)
		if first == nil {
			continue
		}
		if second, _ := nextField(rest); second == nil {
			d, err := ParseDomain(string(first))
			if err != nil {
				return n, fmt.Errorf("%d: %w", line, err)
			}
			s.Add(d)
			n++
			continue
		}
		// A hosts-file line: the first field must be an address.
		if _, ok := ParseLiteral(string(first)); !ok {
			return n, fmt.Errorf("%d: want one domain per line, or an address followed by names as in a hosts file, not %q", line, strings.TrimSpace(string(b)))
		}
		for {
			var name []byte
			name, rest = nextField(rest)
			if name == nil {
				break
			}
			if _, ok := ParseLiteral(string(name)); ok {
				continue
			}
			d, err := ParseDomain(string(name))
			if err != nil {
				return n, fmt.Errorf("%d: %w", line, err)
			}
			s.Add(d)
			n++
		}
	}
	if err := sc.Err(); err != nil {
		return n, fmt.Errorf("%d: %w", line+1, err)
	}
	return n, nil
}

// nextField splits off the first run of non-blank bytes of b; nil when
// there is none.
func nextField(b []byte) (field, rest []byte) {
	i := 0
	for i < len(b) && isBlank(b[i]) {
		i++
	}
	if i == len(b) {
		return nil, nil
	}
	j := i
	for j < len(b) && !isBlank(b[j]) {
		j++
	}
	return b[i:j], b[j:]
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }
