package config

import (
	"strconv"
	"strings"
)

// Key paths name a key in a document the way errors print it:
// "listener[1].plugins[0]", `a."b.c"`. These helpers build and take them
// apart without allocating more than the result.

// firstSeg splits the first segment off path: a key as joinKey writes it
// (quoted or bare) or an index "[i]". It returns "" at the end of path
// or at a malformed segment.
func firstSeg(path string) (seg, rest string) {
	path = strings.TrimPrefix(path, ".")
	if path == "" {
		return "", ""
	}
	switch path[0] {
	case '"':
		q, err := strconv.QuotedPrefix(path)
		if err != nil {
			return "", ""
		}
		return q, path[len(q):]
	case '[':
		i := strings.IndexByte(path, ']')
		if i < 0 {
			return "", ""
		}
		return path[:i+1], path[i+1:]
	}
	i := strings.IndexAny(path, ".[")
	if i < 0 {
		return path, ""
	}
	return path[:i], path[i:]
}

// keySeg is a key as a path segment: quoted unless it is bare.
func keySeg(name string) string {
	if !isBareKey(name) {
		return strconv.Quote(name)
	}
	return name
}

// joinKey appends the key name to path, quoting it unless it is bare.
func joinKey(path, name string) string {
	seg := keySeg(name)
	if path == "" {
		return seg
	}
	return path + "." + seg
}

func isBareKey(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// indexKey appends an array index to path.
func indexKey(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// parentKey strips the last part (a key or an index) from path.
func parentKey(path string) string {
	last := 0 // start of the last part, including its '.' or '['
	for i := 0; i < len(path); {
		switch path[i] {
		case '"':
			q, err := strconv.QuotedPrefix(path[i:])
			if err != nil {
				return ""
			}
			i += len(q)
		case '.', '[':
			last = i
			i++
		default:
			i++
		}
	}
	return path[:last]
}

// pathSet is a set of key paths that answers "is this path, or one that
// holds it, in the set" in time proportional to the path, not the set.
type pathSet map[string]bool

func (s pathSet) add(path string) { s[path] = true }

// covers reports whether path or one of its ancestors is in s, as
// isUnder(path, p) for some p in s.
func (s pathSet) covers(path string) bool {
	if path == "" {
		return s[""]
	}
	for p := path; p != ""; p = parentKey(p) {
		if s[p] {
			return true
		}
	}
	return false
}

// isUnder reports whether path is prefix or inside it.
func isUnder(path, prefix string) bool {
	if !strings.HasPrefix(path, prefix) {
		return false
	}
	rest := path[len(prefix):]
	return rest == "" || rest[0] == '.' || rest[0] == '['
}

// stripIndexes removes array indexes from path: "a[1].b" -> "a.b".
func stripIndexes(path string) string {
	var b strings.Builder
	for i := 0; i < len(path); {
		switch path[i] {
		case '"':
			q, err := strconv.QuotedPrefix(path[i:])
			if err != nil {
				b.WriteString(path[i:])
				return b.String()
			}
			b.WriteString(q)
			i += len(q)
		case '[':
			for i < len(path) && path[i] != ']' {
				i++
			}
			i++
		default:
			b.WriteByte(path[i])
			i++
		}
	}
	return b.String()
}
