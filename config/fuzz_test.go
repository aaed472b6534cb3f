package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
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
