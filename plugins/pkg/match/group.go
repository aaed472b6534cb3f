package match

import (
	"errors"
	"fmt"
	"slices"
	"unicode"
)

// MaxGroupLen bounds a group name: names go into every access log line
// of their users, and a longer one is no group anybody wrote.
const MaxGroupLen = 255

// Group is a user group name, as rules and group files write it. It
// decodes from config text with CheckGroup, so a bad name fails inside
// the decoder, at its position.
type Group string

// UnmarshalText checks the name with CheckGroup.
func (g *Group) UnmarshalText(text []byte) error {
	if err := CheckGroup(string(text)); err != nil {
		return err
	}
	*g = Group(text)
	return nil
}

// CheckGroup reports whether name can be a group: not empty, at most
// MaxGroupLen bytes, valid UTF-8 without whitespace or control
// characters (a group file separates names with spaces, and log lines
// must not be split by them).
func CheckGroup(name string) error {
	switch {
	case name == "":
		return errors.New("empty group name")
	case len(name) > MaxGroupLen:
		return fmt.Errorf("group name longer than %d bytes", MaxGroupLen)
	}
	for _, r := range name {
		switch {
		case r == unicode.ReplacementChar:
			return fmt.Errorf("group name %q is not valid UTF-8", name)
		case unicode.IsSpace(r):
			return fmt.Errorf("group name %q contains whitespace", name)
		case unicode.IsControl(r):
			return fmt.Errorf("group name %q contains a control character", name)
		}
	}
	return nil
}

// inGroups reports whether one of have is one of want.
func inGroups(want []Group, have []string) bool {
	for _, g := range want {
		if slices.Contains(have, string(g)) {
			return true
		}
	}
	return false
}
