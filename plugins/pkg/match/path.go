package match

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
)

// URL paths. Rules on paths compare a normal form of the path, so that
// spellings an origin reads as the same path cannot get around them:
//
//   - percent-encoded unreserved characters (RFC 3986 section 2.3:
//     letters, digits, "-", ".", "_", "~") are decoded: /%61dmin is /admin;
//   - %2F and %5C (any case), and a bare backslash, become "/": many
//     origins (nginx, Go's net/http, IIS for "\") route on the decoded
//     path, where /admin%2Fx is /admin/x;
//   - the hex digits of the other escapes are upper case: %c3%a9 is %C3%A9,
//     and a "%" that starts no escape is one: /a%zz is /a%25zz;
//   - runs of "/" are one "/": //admin///x is /admin/x;
//   - dot segments are removed (RFC 3986 section 5.2.4), after the steps
//     above: /x/../admin/./ is /admin/, and /.. is /.
//
// Nothing else changes: case is kept (paths are case-sensitive), so are
// ";" parameters and the escapes of other characters (%25, %3F, %20...).
// Decoding happens once: %252F stays %252F, as an origin decoding once
// sees %2F, not a separator.

// CleanPath returns the normal form of an escaped URL path (a request
// target's path, as sent). An empty path is "/", and "*" (OPTIONS *)
// stays "*"; any other path not starting with "/" gets one.
func CleanPath(p string) string {
	if p == "*" {
		return p
	}
	if isClean(p) {
		return p
	}
	b := make([]byte, 0, len(p)+1)
	if !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "\\") {
		b = append(b, '/')
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\':
			c = '/'
		case c == '%' && (i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2])):
			b = append(b, "%25"...) // a lone "%" is a percent sign
			continue
		case c == '%':
			v := unhex(p[i+1])<<4 | unhex(p[i+2])
			i += 2
			switch {
			case isUnreserved(v):
				c = v
			case v == '/' || v == '\\':
				c = '/'
			default:
				b = append(b, '%', upperHex[v>>4], upperHex[v&15])
				continue
			}
		}
		if c == '/' && len(b) > 0 && b[len(b)-1] == '/' {
			continue // a run of slashes is one
		}
		b = append(b, c)
	}
	return string(removeDotSegments(b))
}

// URLPath is the normal form (CleanPath) of u's path as sent.
func URLPath(u *url.URL) string {
	if u == nil {
		return "/"
	}
	if u.Opaque != "" {
		return CleanPath(u.Opaque)
	}
	return CleanPath(u.EscapedPath())
}

// ParsePathPrefix checks a path prefix as a config writes it: it starts
// with "/", is printable ASCII without "?" or "#", and is in normal form
// (a prefix not in normal form could never match a cleaned path, so the
// error says what to write instead).
func ParsePathPrefix(s string) (string, error) {
	if !strings.HasPrefix(s, "/") {
		return "", fmt.Errorf("invalid path prefix %q: must start with \"/\"", s)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '?' || c == '#' {
			return "", fmt.Errorf("invalid path prefix %q: byte %q not allowed (percent-encode it)", s, c)
		}
	}
	if c := CleanPath(s); c != s {
		return "", fmt.Errorf("path prefix %q is not in normal form: write %q", s, c)
	}
	return s, nil
}

// HasPathPrefix reports whether the cleaned path has one of the prefixes.
func HasPathPrefix(path string, prefixes []string) bool {
	for _, pre := range prefixes {
		if strings.HasPrefix(path, pre) {
			return true
		}
	}
	return false
}

// isClean reports whether p is its own normal form, the common case,
// which then costs no allocation.
func isClean(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '%', '\\':
			return false
		case '/':
			if i+1 < len(p) && p[i+1] == '/' {
				return false
			}
		case '.':
			if p[i-1] == '/' && (i+1 == len(p) || p[i+1] == '/' ||
				(p[i+1] == '.' && (i+2 == len(p) || p[i+2] == '/'))) {
				return false // a "." or ".." segment
			}
		}
	}
	return true
}

// removeDotSegments removes "." and ".." segments from b, in place: RFC
// 3986 section 5.2.4's algorithm for a path that starts with "/" and has
// no empty segment but maybe the last. ".." above the root stays at the
// root. The result is never longer than b, so writing it over b's start
// never overtakes the reading.
func removeDotSegments(b []byte) []byte {
	out := b[:0]
	for i := 0; i < len(b); {
		j := i + 1 // b[i] is '/'; the segment is b[i+1:j]
		for j < len(b) && b[j] != '/' {
			j++
		}
		seg, last := b[i+1:j], j == len(b)
		switch {
		case len(seg) == 1 && seg[0] == '.':
		case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
			if k := bytes.LastIndexByte(out, '/'); k >= 0 {
				out = out[:k]
			}
		default:
			out = append(out, b[i:j]...)
			i = j
			continue
		}
		if last {
			out = append(out, '/') // "/a/." and "/a/b/.." end with "/"
		}
		i = j
	}
	if len(out) == 0 {
		out = append(out, '/')
	}
	return out
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// isUnreserved reports RFC 3986's unreserved characters, whose encoded
// and plain forms are the same URI.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
