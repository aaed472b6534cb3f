package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestGolden loads each testdata/*.toml and compares the error (or, for a
// valid file, the summary) with testdata/*.golden. Run
// `go test ./config -run Golden -update` to rewrite the golden files after
// a deliberate change, and review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.toml")
	if err != nil || len(files) == 0 {
		t.Fatalf("glob testdata: got %v, %v, want files", files, err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			var got string
			c, err := Load(file)
			if err != nil {
				got = err.Error() + "\n"
			} else {
				got = c.Summary() + "\n"
			}
			golden := strings.TrimSuffix(file, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("read golden file: %v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}
