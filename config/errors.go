package config

import (
	"errors"
	"fmt"
	"sort"
	"strings"
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

func (p Problem) String() string {
	if p.Key == "" {
		return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s: %s", p.File, p.Line, p.Col, p.Key, p.Msg)
}

// Error returns one line per problem, "FILE:LINE:COL: key.path: message",
// ordered by position.
func (e *Error) Error() string {
	ps := append([]Problem(nil), e.Problems...)
	sortProblems(ps)
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
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
