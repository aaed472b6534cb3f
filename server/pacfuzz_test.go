package server

import (
	"strings"
	"testing"

	"ferry/config"
)

// FuzzGeneratePAC feeds values config would refuse straight to the
// generator: whatever a direct pattern or proxy entry holds, the file's
// code outside its string literals must be what a harmless value gives
// (or, for a pattern the generator leaves out, what no pattern gives;
// one that stands for several names, ".example.com", gives several
// literals in the same array), so no value can become script.
func FuzzGeneratePAC(f *testing.F) {
	for _, s := range []string{"x", `"; alert(1); "`, "a\nb", `\`, "\u2028", "</script>", "*.internal"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		pac := func(direct []string, proxy string) string {
			p := &config.PAC{Direct: direct, FallbackDirect: true}
			code := codeOnly(t, string(generatePAC(p, []string{"PROXY " + proxy})))
			for strings.Contains(code, `"", ""`) {
				code = strings.ReplaceAll(code, `"", ""`, `""`)
			}
			return code
		}
		got, want, none := pac([]string{v}, v), pac([]string{"x"}, "x"), pac(nil, "x")
		if got != want && got != none {
			t.Fatalf("value %q changed the code:\n%s\nwant:\n%s", v, got, want)
		}
	})
}

// codeOnly blanks the contents of the double-quoted string literals of
// JavaScript source, failing t on one left open.
func codeOnly(t *testing.T, src string) string {
	var b strings.Builder
	in, esc := false, false
	for _, r := range src {
		switch {
		case !in:
			b.WriteRune(r)
			in = r == '"'
		case esc:
			esc = false
		case r == '\\':
			esc = true
		case r == '"':
			b.WriteRune(r)
			in = false
		case r == '\n' || r == '\r' || r == '\u2028' || r == '\u2029':
			t.Fatalf("line break inside a string literal:\n%s", src)
		}
	}
	if in {
		t.Fatalf("string literal left open:\n%s", src)
	}
	return b.String()
}
