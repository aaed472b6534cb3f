package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Error is every problem found in a configuration. Load, Parse and
// PluginConfig.Decode return it as *Error:
//
//	var ce *config.Error
//	if errors.As(err, &ce) {
//		for _, p := range ce.Problems { ... }
//	}
type Error struct {
	Problems []Problem
	// Partial is the configuration as far as it decoded, when the file
	// parsed and only values or rules were wrong, so that a caller can
	// check more of it (plugin settings) and report everything at once.
	// Nil otherwise. It must not be run.
	Partial *Config
}

// Join merges errors into one: when every non-nil error is an *Error, the
// result is one *Error with all their problems in order; otherwise the
// errors are joined as errors.Join does. Nil when all are nil.
func Join(errs ...error) error {
	var all []Problem
	var partial *Config
	var rest []error
	for _, err := range errs {
		if err == nil {
			continue
		}
		var ce *Error
		if errors.As(err, &ce) {
			all = append(all, ce.Problems...)
			if partial == nil {
				partial = ce.Partial
			}
			continue
		}
		rest = append(rest, err)
	}
	if len(all) == 0 && len(rest) == 0 {
		return nil
	}
	var merged error
	if len(all) > 0 {
		sortProblems(all)
		merged = &Error{Problems: all, Partial: partial}
	}
	if len(rest) == 0 {
		return merged
	}
	return errors.Join(append([]error{merged}, rest...)...)
}

// Problem is one mistake in a configuration file.
type Problem struct {
	File string
	// Line and Col (1-based, Col in bytes) locate the offending key or
	// value, or the header of the table that lacks a required key.
	Line, Col int
	// Key is the full key path, like "listener[1].plugins[0]"; empty for
	// syntax errors.
	Key string
	Msg string
}

// String returns "FILE:LINE:COL: key.path: message". A key longer than
// MaxEcho bytes is cut short, and so is the middle of a message more than
// three times that long, with the length of what was cut: a 7 MB value
// echoed in a message is not printed whole.
func (p Problem) String() string {
	msg := clipMiddle(p.Msg)
	if p.Key == "" {
		return fmt.Sprintf("%s:%d:%d: %s", clip(p.File), p.Line, p.Col, msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", clip(p.File), p.Line, p.Col, clip(p.Key), msg)
}

// MaxProblems is how many problems Error prints; the count of the rest
// follows them.
const MaxProblems = 100

// MaxEcho is how much of a long key or value errors echo.
const MaxEcho = 200

// Error returns one line per problem, "FILE:LINE:COL: key.path: message",
// ordered by position: the first MaxProblems, then how many more there
// are.
func (e *Error) Error() string {
	ps := append([]Problem(nil), e.Problems...)
	sortProblems(ps)
	n := min(len(ps), MaxProblems)
	lines := make([]string, n, n+1)
	for i, p := range ps[:n] {
		lines[i] = p.String()
	}
	if more := len(ps) - n; more > 0 {
		lines = append(lines, fmt.Sprintf("... and %d more problems", more))
	}
	return strings.Join(lines, "\n")
}

// clip cuts s to MaxEcho bytes (at a character boundary), adding "… (N
// bytes)" with its whole length.
func clip(s string) string {
	if len(s) <= MaxEcho {
		return s
	}
	return utf8Prefix(s, MaxEcho) + fmt.Sprintf("… (%d bytes)", len(s))
}

// clipMiddle cuts the middle of a message longer than 3*MaxEcho bytes,
// keeping MaxEcho bytes at each end: the start says what is wrong, the
// end often says what is wanted.
func clipMiddle(s string) string {
	if len(s) <= 3*MaxEcho {
		return s
	}
	head := utf8Prefix(s, MaxEcho)
	tail := s[len(s)-MaxEcho:]
	for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
		tail = tail[1:]
	}
	return fmt.Sprintf("%s… (%d bytes cut) …%s", head, len(s)-len(head)-len(tail), tail)
}

// utf8Prefix returns at most n bytes of s, not splitting a character.
func utf8Prefix(s string, n int) string {
	for n > 0 && n < len(s) && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func sortProblems(ps []Problem) {
	sort.SliceStable(ps, func(i, j int) bool {
		a, b := ps[i], ps[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		if a.Col != b.Col {
			return a.Col < b.Col
		}
		return a.Key < b.Key
	})
}
