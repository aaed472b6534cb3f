package replace

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"ferry/plugins"
)

// Body rules (scope "body") rewrite whole HTTP message bodies through
// plugins.HTTPBodyHook: ferry hands over the body decoded (no
// Content-Encoding), at most [limits] max_buffered_body_bytes, and
// encodes the result again. Stream rules never see these calls; they keep
// rewriting the bytes the data hooks see.

var _ plugins.HTTPBodyHook = (*Plugin)(nil)

// maxBodyGrowth is what body rules may add to a body, beyond doubling it:
// a rule that would make more of it (a short pattern matched everywhere,
// a long replacement) leaves the body as it was, so that an origin's body
// cannot make the plugin allocate without bound.
const maxBodyGrowth = 1 << 20

// mediaTypes is a body rule's content_type list: exact media types
// ("text/html") and "type/*" wildcards. Empty matches every message, one
// without a Content-Type included.
type mediaTypes struct {
	exact    []string // "text/html"
	prefixes []string // "text/" for "text/*"
	any      bool     // "*/*" or no list
}

// parseMediaTypes checks a content_type list.
func parseMediaTypes(list []string) (mediaTypes, error) {
	var mt mediaTypes
	if len(list) == 0 {
		mt.any = true
		return mt, nil
	}
	for i, v := range list {
		key := fmt.Sprintf("content_type[%d]", i)
		t, err := parseMediaType(v)
		if err != nil {
			return mt, plugins.KeyErr(key, err)
		}
		switch {
		case t == "*/*":
			mt.any = true
		case strings.HasSuffix(t, "/*"):
			mt.prefixes = append(mt.prefixes, strings.TrimSuffix(t, "*"))
		default:
			mt.exact = append(mt.exact, t)
		}
	}
	return mt, nil
}

// parseMediaType checks one content_type entry: type/subtype, lower
// cased, without parameters; "*" only as a whole subtype.
func parseMediaType(v string) (string, error) {
	if strings.Contains(v, ";") {
		return "", fmt.Errorf("%q has parameters: name the media type only, like text/html", v)
	}
	t, sub, ok := strings.Cut(strings.ToLower(strings.TrimSpace(v)), "/")
	if !ok || t == "" || sub == "" {
		return "", fmt.Errorf("%q is not a media type like text/html or text/*", v)
	}
	if t == "*" && sub != "*" {
		return "", fmt.Errorf("%q: a wildcard type needs a wildcard subtype (*/*)", v)
	}
	// mime checks the token syntax of both parts ("*" is a token).
	if _, _, err := mime.ParseMediaType(t + "/" + sub); err != nil {
		return "", fmt.Errorf("%q is not a media type like text/html or text/*", v)
	}
	return t + "/" + sub, nil
}

// match reports whether a message of media type t (lower case, no
// parameters, "" when none) is in the list.
func (mt *mediaTypes) match(t string) bool {
	if mt.any {
		return true
	}
	for _, e := range mt.exact {
		if t == e {
			return true
		}
	}
	for _, p := range mt.prefixes {
		if strings.HasPrefix(t, p) {
			return true
		}
	}
	return false
}

// bodyRules returns the body rules of direction d.
func (p *Plugin) bodyRules(d plugins.Direction) []*rule {
	if d == up {
		return p.bodyUp
	}
	return p.bodyDown
}

// WantsHTTPBody implements plugins.HTTPBodyHook: yes when a body rule
// applies to m's direction and media type. Other bodies keep streaming.
func (p *Plugin) WantsHTTPBody(_ *plugins.Session, m *plugins.HTTPMessage) bool {
	rules := p.bodyRules(m.Dir)
	if len(rules) == 0 {
		return false
	}
	t := m.ContentType()
	for _, r := range rules {
		if r.types.match(t) {
			return true
		}
	}
	return false
}

// OnHTTPBody implements plugins.HTTPBodyHook: the body rules of m's
// direction and media type rewrite the decoded body, in config order.
// A result past the growth bound leaves the body as it came.
func (p *Plugin) OnHTTPBody(s *plugins.Session, m *plugins.HTTPMessage, body []byte) ([]byte, error) {
	t := m.ContentType()
	limit := 2*len(body) + maxBodyGrowth
	out := body
	for _, r := range p.bodyRules(m.Dir) {
		if !r.types.match(t) {
			continue
		}
		var ok bool
		if out, ok = r.replaceAll(out, limit); !ok {
			s.Log.Warn().Str("plugin", p.name).Int("bytes", len(body)).
				Msg("replace: body rules would grow the body past twice its size plus 1MiB; body left unchanged")
			return body, nil
		}
	}
	return out, nil
}

// replaceAll rewrites every match in a whole body, as the stream path
// would with the body as one final read (leftmost, not overlapping, not
// scanned again), through the standard library's whole-text versions:
// bytes.ReplaceAll, 3 to 4 times as fast as the streaming loop on a
// megabyte, and regexp.ReplaceAll, which expands $1 and ${name} as
// Expand does but finds one match at a time instead of listing every
// match first. It reports false, having allocated at most limit bytes
// for a literal, when the result would be over limit.
func (r *rule) replaceAll(body []byte, limit int) ([]byte, bool) {
	if r.re != nil {
		out := r.re.ReplaceAll(body, r.repl)
		return out, len(out) <= limit
	}
	n := bytes.Count(body, r.find)
	if n == 0 {
		return body, true
	}
	if len(body)+n*(len(r.repl)-len(r.find)) > limit {
		return nil, false
	}
	return bytes.ReplaceAll(body, r.find, r.repl), true
}
