package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// FuzzParse checks that Parse never panics, and that every problem it
// reports has a position.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.toml")
	seeds = append(seeds, "../ferry.example.toml", "default.toml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(pluginSrc))
	f.Add([]byte("listener = [{ listen = [[1]], x = { y = [1, {z = 2}] } }]\n"))
	f.Add([]byte("[listener]\nlisten = 1\n[log.level]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.toml", data)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: got %T %v, want *Error", err, err)
			}
			if len(ce.Problems) == 0 {
				t.Fatalf("Parse: got an *Error without problems")
			}
			for _, p := range ce.Problems {
				if p.Line < 1 || p.Col < 1 {
					t.Fatalf("problem without a position: %+v", p)
				}
			}
			return
		}
		_ = c.Summary()
		for i := range c.Plugins {
			var v struct {
				A string   `toml:"a"`
				D Duration `toml:"d"`
			}
			_ = c.Plugins[i].Decode(&v)
		}
	})
}

// FuzzParseHostile feeds Parse documents built to hurt it: deep dotted
// keys and table headers, deeply nested arrays and inline tables, huge
// arrays, long keys and values, and asserts that each is refused or
// loaded within a memory bound linear in its size: the position index
// once took 3 GB for an 80 KB file.
func FuzzParseHostile(f *testing.F) {
	f.Add(uint8(0), uint32(40_000), uint32(1), "a")
	f.Add(uint8(1), uint32(100_000), uint32(1), "a")
	f.Add(uint8(2), uint32(9_999), uint32(1), "")
	f.Add(uint8(3), uint32(9_999), uint32(1), "b")
	f.Add(uint8(4), uint32(1_750_000), uint32(1), `"a"`)
	f.Add(uint8(5), uint32(1), uint32(7_000_000), "x")
	f.Add(uint8(6), uint32(99_000), uint32(1), `"x"`)
	f.Add(uint8(7), uint32(60), uint32(100_000), "k")
	f.Fuzz(func(t *testing.T, kind uint8, n, size uint32, s string) {
		n %= 2_000_000
		size %= 8 << 20
		if len(s) > 64 {
			s = s[:64]
		}
		data := hostileDoc(kind, int(n), int(size), s)
		if len(data) > 16<<20 {
			t.Skip("larger than the fuzzer needs")
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		_, err := Parse("hostile.toml", data)
		took := time.Since(start)
		runtime.ReadMemStats(&after)
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) == 0 {
				t.Fatalf("Parse: got %T %v, want *Error with problems", err, err)
			}
			if msg := err.Error(); len(msg) > 64<<10 {
				t.Fatalf("error is %d bytes, want at most 64 KiB", len(msg))
			}
		}
		alloc := after.TotalAlloc - before.TotalAlloc
		if bound := uint64(256<<20 + 64*len(data)); alloc > bound {
			t.Fatalf("kind %d, %d bytes: Parse allocated %d MiB, want at most %d MiB (took %v)", kind, len(data), alloc>>20, bound>>20, took)
		}
	})
}

// hostileDoc builds a document of one of several hostile shapes: kind
// picks the shape, n its depth or length, size the length of its keys or
// values, s the text repeated.
func hostileDoc(kind uint8, n, size int, s string) []byte {
	var b strings.Builder
	rep := func(t string, k int) {
		for i := 0; i < k && b.Len() < 16<<20; i++ {
			b.WriteString(t)
		}
	}
	key := "k"
	if size > 1 {
		key = strings.Repeat("k", min(size, 8<<20))
	}
	switch kind % 8 {
	case 0: // a deep dotted table header
		b.WriteString("[a")
		rep("."+s, n)
		b.WriteString("]\n")
	case 1: // a deep dotted key
		b.WriteString("a")
		rep("."+s, n)
		b.WriteString(" = 1\n")
	case 2: // deeply nested arrays
		b.WriteString("a = ")
		rep("[", n)
		rep("]", n)
		b.WriteString("\n")
	case 3: // deeply nested inline tables
		b.WriteString("a = ")
		rep("{"+s+" = ", n)
		b.WriteString("1")
		rep("}", n)
		b.WriteString("\n")
	case 4: // a huge array under a key ferry knows
		b.WriteString("[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [")
		rep(s+",", n)
		b.WriteString("]\n")
	case 5: // a huge value
		b.WriteString("[[listener]]\nlisten = \"")
		rep(s, size)
		b.WriteString("\"\n")
	case 6: // a huge array of plugin names that do not exist
		b.WriteString("[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [")
		rep(`"x",`, n)
		b.WriteString("]\n")
	case 7: // long keys, many of them, some nested
		b.WriteString("[[listener]]\nlisten = \"127.0.0.1:0\"\n")
		for i := 0; i < n && b.Len() < 16<<20; i++ {
			fmt.Fprintf(&b, "%s%d.%s = %q\n", key, i, s, s)
		}
	}
	return []byte(b.String())
}
