package replace

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"

	"ferry/plugins"
)

// rule is one compiled [[plugin.rule]]: a literal or a regexp and what
// replaces its matches.
type rule struct {
	up, down bool
	// body marks a body rule (scope "body"): it rewrites whole decoded
	// HTTP bodies of the media types in types (any type when empty).
	body  bool
	types mediaTypes

	// find is the literal pattern; nil for a regexp rule.
	find []byte
	// re and live are the regexp and the program that tells how far back
	// a match may still be in progress; nil for a literal rule.
	re   *regexp.Regexp
	live *liveness
	// repl is the replacement: bytes for a literal rule, a template with
	// $1 / ${name} for a regexp rule.
	repl []byte
}

// compileRule checks and compiles r; maxMatch is the regexp hold bound.
func compileRule(r Rule, maxMatch int) (*rule, error) {
	out := &rule{repl: []byte(r.Replace)}
	switch r.Direction {
	case "up":
		out.up = true
	case "down":
		out.down = true
	case "both":
		out.up, out.down = true, true
	case "":
		return nil, plugins.Errorf("direction", "missing: set up, down or both")
	default:
		return nil, plugins.Errorf("direction", "%q is not up, down or both", r.Direction)
	}
	if err := out.compileScope(r); err != nil {
		return nil, err
	}
	switch {
	case r.Find != "" && r.Regexp != "":
		return nil, plugins.Errorf("regexp", "set find or regexp, not both")
	case r.Find != "":
		out.find = []byte(r.Find)
	case r.Regexp != "":
		re, live, err := compileRegexp(r.Regexp, maxMatch, !out.body)
		if err != nil {
			return nil, plugins.KeyErr("regexp", err)
		}
		out.re, out.live = re, live
	default:
		return nil, plugins.Errorf("find", "set find (a literal) or regexp")
	}
	return out, nil
}

// compileScope checks the rule's scope and the keys that go with it.
func (out *rule) compileScope(r Rule) error {
	switch r.Scope {
	case "", "stream":
		if len(r.ContentType) > 0 {
			return plugins.Errorf("content_type", `only for body rules: add scope = "body"`)
		}
	case "body":
		out.body = true
		types, err := parseMediaTypes(r.ContentType)
		if err != nil {
			return err
		}
		out.types = types
	default:
		return plugins.Errorf("scope", "%q is not stream or body", r.Scope)
	}
	return nil
}

// streamless names the empty-width assertions rejected in regexps: a
// stream has no fixed start or end, and a word boundary at a read's edge
// would depend on how the bytes were split.
var streamless = map[syntax.Op]string{
	syntax.OpBeginLine:      "^ (with (?m))",
	syntax.OpEndLine:        "$ (with (?m))",
	syntax.OpBeginText:      `^ or \A`,
	syntax.OpEndText:        `$ or \z`,
	syntax.OpWordBoundary:   `\b`,
	syntax.OpNoWordBoundary: `\B`,
}

// compileRegexp compiles expr, for streaming unless stream is false (a
// body rule, which sees the whole text at once, may use anchors and word
// boundaries and needs no liveness program). Either way no empty matches.
func compileRegexp(expr string, maxMatch int, stream bool) (*regexp.Regexp, *liveness, error) {
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, nil, err
	}
	// The same parse regexp.Compile does, for the liveness program.
	tree, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return nil, nil, err
	}
	if re.Match(nil) {
		return nil, nil, errors.New("matches the empty string: it would insert the replacement between every two bytes")
	}
	if !stream {
		return re, nil, nil
	}
	if what := findStreamless(tree); what != "" {
		return nil, nil, fmt.Errorf("%s has no meaning on a stream: match the bytes around it instead (like \\r\\n), or use a body rule (scope = \"body\")", what)
	}
	prog, err := syntax.Compile(tree.Simplify())
	if err != nil {
		return nil, nil, err
	}
	return re, newLiveness(prog, maxMatch), nil
}

func findStreamless(re *syntax.Regexp) string {
	if what, ok := streamless[re.Op]; ok {
		return what
	}
	for _, sub := range re.Sub {
		if what := findStreamless(sub); what != "" {
			return what
		}
	}
	return ""
}

// apply replaces the matches in w that no later bytes can change and
// returns the result with cut: out is w[:cut] rewritten, w[cut:] must be
// held until more bytes come. With final, nothing more will come: every
// match counts and cut is len(w). out may alias w.
func (r *rule) apply(w []byte, final bool) (out []byte, cut int) {
	if r.re != nil {
		return r.applyRegexp(w, final)
	}
	return r.applyLiteral(w, final)
}

func (r *rule) applyLiteral(w []byte, final bool) ([]byte, int) {
	var out []byte
	matched := false
	i := 0
	for {
		j := bytes.Index(w[i:], r.find)
		if j < 0 {
			break
		}
		out = append(out, w[i:i+j]...)
		out = append(out, r.repl...)
		i += j + len(r.find)
		matched = true
	}
	cut := len(w)
	if !final {
		cut -= prefixSuffix(w[i:], r.find)
	}
	if !matched {
		return w[:cut], cut
	}
	return append(out, w[i:cut]...), cut
}

// prefixSuffix is the length of the longest proper prefix of pat that
// ends b: the bytes that may be the start of a match.
func prefixSuffix(b, pat []byte) int {
	from := max(0, len(b)-(len(pat)-1))
	for from < len(b) {
		k := bytes.IndexByte(b[from:], pat[0])
		if k < 0 {
			return 0
		}
		from += k
		if bytes.HasPrefix(pat, b[from:]) {
			return len(b) - from
		}
		from++
	}
	return 0
}

func (r *rule) applyRegexp(w []byte, final bool) ([]byte, int) {
	hold := len(w)
	if !final {
		hold = r.live.holdFrom(w)
		if hold == 0 {
			return w[:0], 0
		}
	}
	var out []byte
	matched := false
	i := 0
	for _, m := range r.re.FindAllSubmatchIndex(w, -1) {
		if m[0] >= hold {
			// A match may still begin at or before it.
			break
		}
		out = append(out, w[i:m[0]]...)
		out = r.re.Expand(out, r.repl, w, m)
		i = m[1]
		matched = true
	}
	cut := max(hold, i)
	if !matched {
		return w[:cut], cut
	}
	return append(out, w[i:cut]...), cut
}
