package match

import (
	"net/url"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"clean", "/admin/x", "/admin/x"},
		{"root", "/", "/"},
		{"empty", "", "/"},
		{"asterisk", "*", "*"},
		{"no leading slash", "admin/", "/admin/"},
		{"unreserved decoded", "/%61dmin/%7Euser/%2d%2E%5f", "/admin/~user/-._"},
		{"reserved kept upper", "/a%3fb/%c3%a9/%20", "/a%3Fb/%C3%A9/%20"},
		{"encoded slash", "/admin%2Fx", "/admin/x"},
		{"encoded slash lower", "/admin%2fx", "/admin/x"},
		{"encoded backslash", "/admin%5Cx", "/admin/x"},
		{"backslash", "\\admin\\x", "/admin/x"},
		{"double slash", "//admin//x///", "/admin/x/"},
		{"dot", "/./admin/./x/.", "/admin/x/"},
		{"dotdot", "/x/../admin/", "/admin/"},
		{"dotdot same", "/admin/../admin/", "/admin/"},
		{"dotdot above root", "/../../admin", "/admin"},
		{"dotdot last", "/a/b/..", "/a/"},
		{"encoded dots", "/x/%2e%2E/admin/", "/admin/"},
		{"encoded dot slash", "/x%2F..%2Fadmin/", "/admin/"},
		{"slash then dotdot", "/admin//../x", "/x"},
		{"dot names kept", "/.well-known/..x/...", "/.well-known/..x/..."},
		{"double encoded kept", "/admin%252Fx", "/admin%252Fx"},
		{"bad escape encoded", "/a%zz/%4", "/a%25zz/%254"},
		{"no escape made by decoding", "/%7%41", "/%257A"},
		{"case kept", "/Admin/", "/Admin/"},
		{"params kept", "/admin;x/", "/admin;x/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CleanPath(tt.in); got != tt.want {
				t.Errorf("CleanPath(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestURLPath(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"https://example.com/%61dmin/?q", "/admin/"},
		{"https://example.com", "/"},
		{"http://example.com//admin/../admin/x", "/admin/x"},
		{"http://example.com/a%2Fb", "/a/b"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.raw)
		if err != nil {
			t.Fatal(err)
		}
		if got := URLPath(u); got != tt.want {
			t.Errorf("URLPath(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
	if got := URLPath(nil); got != "/" {
		t.Errorf("URLPath(nil) = %q, want /", got)
	}
}

func TestParsePathPrefix(t *testing.T) {
	tests := []struct {
		in, err string
	}{
		{"/admin/", ""},
		{"/", ""},
		{"/a%C3%A9", ""},
		{"admin/", "must start with"},
		{"/a b", "not allowed"},
		{"/a?b", "not allowed"},
		{"/é", "not allowed"},
		{"//admin", `write "/admin"`},
		{"/%61dmin", `write "/admin"`},
		{"/a/../b", `write "/b"`},
		{"/a%c3%a9", `write "/a%C3%A9"`},
	}
	for _, tt := range tests {
		_, err := ParsePathPrefix(tt.in)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParsePathPrefix(%q): %v", tt.in, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParsePathPrefix(%q) = %v, want an error with %q", tt.in, err, tt.err)
		}
	}
}

// FuzzCleanPath checks the normal form's properties on any input: it is
// stable, starts with "/", and has no empty or dot segment but a last
// empty one.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/", "", "*", "/a/../b", "//x//", "/%2e%2E/", "/a%2F..%2Fb", "\\..\\a", "/%", "/%4", "/.a/..b/.."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		c := CleanPath(p)
		if c == "*" {
			return
		}
		if again := CleanPath(c); again != c {
			t.Fatalf("CleanPath(%q) = %q, again %q", p, c, again)
		}
		if !strings.HasPrefix(c, "/") || strings.Contains(c, "//") || strings.Contains(c, "\\") {
			t.Fatalf("CleanPath(%q) = %q", p, c)
		}
		segs := strings.Split(c[1:], "/")
		for _, s := range segs {
			if s == "." || s == ".." {
				t.Fatalf("CleanPath(%q) = %q has a dot segment", p, c)
			}
		}
	})
}

func BenchmarkCleanPath(b *testing.B) {
	for _, p := range []string{"/static/app.js", "/static//x/../%61pp.js"} {
		b.Run(p, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				CleanPath(p)
			}
		})
	}
}
