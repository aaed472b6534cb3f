package config

import (
	"errors"
	"fmt"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"ferry/plugins"
)

// PluginConfig is one [[plugin]] table. Its own keys stay undecoded until
// the plugin's factory calls Decode with its options struct.
type PluginConfig struct {
	// Name is the instance name listeners refer to; unique. Required.
	Name string
	// Type is the registered plugin type. Default: Name.
	Type string

	file  string         // the configuration file
	path  string         // key path of the table, like "plugin[2]"
	table map[string]any // the keys other than name and type
	// badType is set when name or type is not a string: Load has said so.
	badType bool
	idx     *index // positions in the whole file
}

// Decode fills v, a pointer to the plugin's options struct, from the
// table's keys other than name and type. It is strict: an unknown key or a
// value of the wrong type is an error. Fields of v that the table does not
// set keep their value, so v may hold the defaults. Errors are a *Error
// whose problems carry the position in the original file:
//
//	ferry.toml:31:1: plugin[1].max_bytes: unknown key
//
// units.Duration, units.Size and CIDR fields get the same checks as ferry's own keys,
// except that a negative Size given as a TOML integer must be rejected by
// the plugin.
func (p *PluginConfig) Decode(v any) error {
	data, err := toml.Marshal(p.table)
	if err != nil {
		return p.WrapError(fmt.Errorf("encode options: %w", err))
	}
	var generic map[string]any
	if err := toml.Unmarshal(data, &generic); err != nil {
		return p.WrapError(fmt.Errorf("decode options: %w", err))
	}
	sub, err := buildIndex(data)
	if err != nil {
		return p.WrapError(fmt.Errorf("index options: %w", err))
	}
	res := decodeStrict(data, sub, generic, v)
	if len(res.problems) == 0 {
		return nil
	}
	if p.idx == nil {
		errs := make([]error, len(res.problems))
		for i, pr := range res.problems {
			errs[i] = errors.New(pr.path + ": " + pr.msg)
		}
		return fmt.Errorf("plugin %s: %w", p.Name, errors.Join(errs...))
	}
	e := &Error{}
	for _, pr := range res.problems {
		key := p.path
		off := -1
		if pr.path != "" {
			key = subKey(p.path, pr.path)
			off = p.idx.offsetOf(key, pr.atValue)
		}
		if off < 0 {
			off = p.idx.offsetOf(p.path, false)
		}
		line, col := p.idx.lineCol(off)
		e.Problems = append(e.Problems, Problem{File: p.file, Line: line, Col: col, Key: key, Msg: pr.msg})
	}
	sortProblems(e.Problems)
	return e
}

// TypeKey returns the key, relative to the table, that names the plugin's
// type: "type", or "name" when the table leaves type out. It is for
// reporting a type that is not compiled in, which config does not check:
//
//	if _, ok := plugins.Lookup(pc.Type); !ok {
//		return pc.WrapError(plugins.Errorf(pc.TypeKey(), "unknown plugin type %q", pc.Type))
//	}
//
// It returns "" when Load has already reported the name or type as
// missing or malformed, so that the table gets one problem, not two.
func (p *PluginConfig) TypeKey() string {
	switch {
	case p.badType || p.Name == "":
		return ""
	case p.idx != nil && !p.idx.has(subKey(p.path, "type")):
		return "name"
	}
	return "type"
}

// Where returns the table's position and key path, "ferry.toml:29:1:
// plugin[1]", to prefix errors about the plugin that have no key of their
// own. For a PluginConfig not read from a file it is "plugin NAME".
func (p *PluginConfig) Where() string {
	if p.idx == nil {
		return "plugin " + p.Name
	}
	line, col := p.idx.lineCol(p.idx.offsetOf(p.path, false))
	return fmt.Sprintf("%s:%d:%d: %s", p.file, line, col, p.path)
}

// WrapError gives a factory's error a position. A *Error passes as it is.
// A *plugins.KeyError points at its key when the table sets it; any other
// error, and a KeyError whose key the table does not set, points at the
// table's header. A joined error (errors.Join) is wrapped part by part, so
// a factory reports all its problems at once. nil stays nil.
func (p *PluginConfig) WrapError(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts := j.Unwrap()
		wrapped := make([]error, len(parts))
		for i, e := range parts {
			wrapped[i] = p.WrapError(e)
		}
		return Join(wrapped...)
	}
	var ce *Error
	if err == nil || errors.As(err, &ce) {
		return err
	}
	if p.idx == nil {
		return fmt.Errorf("plugin %s: %w", p.Name, err)
	}
	key, msg := p.path, err.Error()
	if ke, ok := err.(*plugins.KeyError); ok && ke.Key != "" && p.idx.has(subKey(p.path, ke.Key)) {
		key, msg = subKey(p.path, ke.Key), ke.Err.Error()
	}
	return p.problem(key, msg)
}

// problem is a *Error with one problem about key, at its position.
func (p *PluginConfig) problem(key, msg string) *Error {
	line, col := p.idx.lineCol(p.idx.offsetOf(key, false))
	return &Error{Problems: []Problem{{File: p.file, Line: line, Col: col, Key: key, Msg: msg}}}
}

// subKey joins a key path relative to a table to the table's path.
func subKey(table, rel string) string {
	if rel == "" {
		return table
	}
	if strings.HasPrefix(rel, "[") {
		return table + rel
	}
	return table + "." + rel
}
