package config

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	deep := func(open, close string, n int) string {
		return "a = " + strings.Repeat(open, n) + strings.Repeat(close, n) + "\n"
	}
	tests := []struct {
		name      string
		src       string
		line, col int // 0: passes
		msg       string
	}{
		{name: "plain", src: "[[listener]]\nlisten = \"127.0.0.1:0\"\n"},
		{name: "brackets in strings and comments", src: "a = \"[[[{{{\" # [[[[\nb = '''\n[[[[\n'''\nc = \"\"\"\\\"\"\" [[[\"\"\"\n"},
		{name: "64 levels", src: "[" + strings.Repeat("a.", 62) + "a]\n"},
		{name: "65 levels", src: "[" + strings.Repeat("a.", 64) + "a]\n", line: 1, col: 127, msg: "nested more than 64 levels deep"},
		{name: "dotted key", src: "[t]\n" + strings.Repeat("a.", 70) + "a = 1\n", line: 2, col: 126, msg: "nested more than 64"},
		{name: "arrays", src: deep("[", "]", 100), line: 1, col: 68, msg: "nested more than 64"},
		{name: "inline tables", src: deep("{b=", "}", 100), line: 1, col: 196, msg: "nested more than 64"},
		{name: "inline tables then a key", src: "a = {b = {}, c = 1}\nd = [1, {e = [2]}]\n[x]\ny = 1\n"},
		// a, the array and its elements
		{name: "100000 items", src: "a = [" + strings.Repeat("1,", MaxItems-2) + "]\n"},
		{name: "too many items", src: "a = [" + strings.Repeat("1,", MaxItems-1) + "]\n", line: 1, col: 200003, msg: "more than 100000 keys"},
		{name: "10000 keys", src: strings.Repeat("a = 1\n", MaxKeys)},
		{name: "too many keys", src: strings.Repeat("a = 1\n", MaxKeys+1), line: MaxKeys + 1, col: 3, msg: "more than 10000 keys and tables"},
		{name: "too many tables", src: strings.Repeat("[[a]]\n", MaxKeys+1), line: MaxKeys + 1, col: 2, msg: "more than 10000 keys and tables"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			off, msg := guard([]byte(tt.src))
			if tt.line == 0 {
				if off >= 0 {
					t.Fatalf("got %q at %d, want no problem", msg, off)
				}
				return
			}
			line, col := newIndex([]byte(tt.src)).lineCol(off)
			if line != tt.line || col != tt.col || !strings.Contains(msg, tt.msg) {
				t.Fatalf("got %d:%d: %q, want %d:%d: %q", line, col, msg, tt.line, tt.col, tt.msg)
			}
		})
	}
}

// Every valid document we ship passes the guard.
func TestGuardPassesExamples(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.toml")
	files = append(files, "../ferry.example.toml", "default.toml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if off, msg := guard(b); off >= 0 {
			t.Errorf("%s: got %q at %d, want no problem", f, msg, off)
		}
	}
}

// The position index takes memory in proportion to the document, however
// deep its keys: 10,000 dotted levels (20 KB) took 200 MB when each entry
// held its whole path.
func TestIndexLinear(t *testing.T) {
	for _, n := range []int{10_000, 40_000} {
		src := []byte("[" + strings.Repeat("a.", n) + "a]\nk = [" + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "]\n")
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		x, err := buildIndex(src)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatal(err)
		}
		if alloc, bound := after.TotalAlloc-before.TotalAlloc, uint64(1000*len(src)); alloc > bound {
			t.Fatalf("%d levels (%d bytes): buildIndex allocated %d MiB, want at most %d MiB", n, len(src), alloc>>20, bound>>20)
		}
		p := strings.Repeat("a.", n) + "a.k" + strings.Repeat("[0]", 4999)
		if !x.has(p) {
			t.Fatalf("%d levels: has(the deepest path): got false, want true", n)
		}
	}
}

// Parse refuses hostile shapes with a position, quickly.
func TestParseHostile(t *testing.T) {
	_, err := Parse("h.toml", []byte("["+strings.Repeat("a.", 100_000)+"a]\n"))
	var ce *Error
	if !errors.As(err, &ce) || !strings.HasPrefix(err.Error(), "h.toml:1:127: nested more than 64 levels") {
		t.Fatalf("got %v, want h.toml:1:127: nested more than 64 levels...", err)
	}
}

func TestErrorClips(t *testing.T) {
	long := strings.Repeat("x", 7<<20)
	e := &Error{Problems: []Problem{{File: "f.toml", Line: 1, Col: 1, Key: "listener[0].listen",
		Msg: `invalid address "` + long + `": want host:port`}}}
	for i := 0; i < 150; i++ {
		e.Problems = append(e.Problems, Problem{File: "f.toml", Line: 2, Col: 1, Key: long, Msg: "unknown key"})
	}
	got := e.Error()
	if len(got) > 64<<10 {
		t.Fatalf("error is %d bytes, want at most 64 KiB", len(got))
	}
	for _, want := range []string{`": want host:port`, "bytes cut", "… (7340032 bytes): unknown key", "... and 51 more problems"} {
		if !strings.Contains(got, want) {
			t.Fatalf("got %.300q..., want it to contain %q", got, want)
		}
	}
}

func TestWhere(t *testing.T) {
	c, err := Parse("w.toml", []byte("[admin]\nlisten = \"127.0.0.1:9090\"\n\n[[listener]]\n  listen = \"127.0.0.1:8080\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]string{
		"listener[0].listen": "w.toml:5:3: listener[0].listen",
		"admin.listen":       "w.toml:2:1: admin.listen",
	} {
		if got := c.Where(key); got != want {
			t.Errorf("Where(%q): got %q, want %q", key, got, want)
		}
	}
	if err := c.OverrideListen([]string{"127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	if got, want := c.Where("listener[0].listen"), "--listen: listener[0].listen"; got != want {
		t.Errorf("after --listen: got %q, want %q", got, want)
	}
}
