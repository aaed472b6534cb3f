package config

import "testing"

func TestIndex(t *testing.T) {
	src := `top = 1
[log]
level = "info"
[[listener]]
name = "a"
[[listener]]
  name = "b"
  trusted_proxies = [
    "10.0.0.0/8", # comment
    "::1",
  ]
[listener.extra]
deep.er = { x = 1, "odd key" = [1, [2, 3], { y = 4 }] }
[[plugin]]
name = "p"
[[plugin.sub]]
k = 1
[[plugin]]
[[plugin.sub]]
k = 2
`
	x, err := buildIndex([]byte(src))
	if err != nil {
		t.Fatalf("buildIndex: got %v", err)
	}
	tests := []struct {
		path      string
		line, col int
	}{
		{"top", 1, 1},
		{"log", 2, 2},
		{"log.level", 3, 1},
		{"listener", 4, 3},
		{"listener[0]", 4, 3},
		{"listener[0].name", 5, 1},
		{"listener[1]", 6, 3},
		{"listener[1].name", 7, 3},
		{"listener[1].trusted_proxies", 8, 3},
		{"listener[1].trusted_proxies[0]", 9, 5},
		{"listener[1].trusted_proxies[1]", 10, 5},
		{"listener[1].extra", 12, 2},
		{"listener[1].extra.deep", 13, 1},
		{"listener[1].extra.deep.er", 13, 1},
		{"listener[1].extra.deep.er.x", 13, 13},
		{`listener[1].extra.deep.er."odd key"`, 13, 20},
		{`listener[1].extra.deep.er."odd key"[0]`, 13, 33},
		{`listener[1].extra.deep.er."odd key"[1]`, 13, 36},
		{`listener[1].extra.deep.er."odd key"[2]`, 13, 44},
		{`listener[1].extra.deep.er."odd key"[2].y`, 13, 46},
		{"plugin[0].name", 15, 1},
		{"plugin[0].sub[0].k", 17, 1},
		{"plugin[1]", 18, 3},
		{"plugin[1].sub[0].k", 20, 1},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			if !x.has(tt.path) {
				t.Fatalf("has(%q): got false, want true", tt.path)
			}
			line, col := x.lineCol(x.offsetOf(tt.path, false))
			if line != tt.line || col != tt.col {
				t.Fatalf("position of %s: got %d:%d, want %d:%d", tt.path, line, col, tt.line, tt.col)
			}
		})
	}

	// Values: the position of the value rather than the key.
	if line, col := x.lineCol(x.offsetOf("listener[1].trusted_proxies", true)); line != 8 || col != 21 {
		t.Fatalf("value of trusted_proxies: got %d:%d, want 8:21", line, col)
	}
	// A key the file does not set is placed at its table's header.
	if line, col := x.lineCol(x.offsetOf("listener[0].listen", false)); line != 4 || col != 3 {
		t.Fatalf("missing listener[0].listen: got %d:%d, want 4:3", line, col)
	}
	// An offset maps back to the innermost key.
	if e := x.entryAt(x.offsetOf(`listener[1].extra.deep.er."odd key"[2].y`, true)); e == nil || e.path() != `listener[1].extra.deep.er."odd key"[2].y` {
		t.Fatalf("entryAt: got %+v, want the y key", e)
	}
	if got := x.raw("listener[1].trusted_proxies[1]"); got != `"::1"` {
		t.Fatalf("raw: got %q, want %q", got, `"::1"`)
	}
}

func TestKeyPaths(t *testing.T) {
	tests := []struct {
		name, path, parent, stripped string
	}{
		{"top", "log", "", "log"},
		{"nested", "log.level", "log", "log.level"},
		{"index", "listener[1]", "listener", "listener"},
		{"key after index", "listener[1].plugins[0]", "listener[1].plugins", "listener.plugins"},
		{"quoted", `a."b.c[0]".d`, `a."b.c[0]"`, `a."b.c[0]".d`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := parentKey(tt.path); got != tt.parent {
				t.Fatalf("parentKey(%q): got %q, want %q", tt.path, got, tt.parent)
			}
			if got := stripIndexes(tt.path); got != tt.stripped {
				t.Fatalf("stripIndexes(%q): got %q, want %q", tt.path, got, tt.stripped)
			}
		})
	}
	if got := joinKey("a", "b.c"); got != `a."b.c"` {
		t.Fatalf("joinKey: got %q, want %q", got, `a."b.c"`)
	}
	for _, tt := range []struct {
		path, prefix string
		want         bool
	}{
		{"listener[0].name", "listener[0]", true},
		{"listener[0]", "listener", true},
		{"listener[0]", "listener[0]", true},
		{"listeners", "listener", false},
		{"listener[10]", "listener[1]", false},
	} {
		if got := isUnder(tt.path, tt.prefix); got != tt.want {
			t.Fatalf("isUnder(%q, %q): got %v, want %v", tt.path, tt.prefix, got, tt.want)
		}
	}
}
