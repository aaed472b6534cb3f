//go:build linux

package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/config"
	_ "ferry/plugins/all"
	"ferry/server"
)

var tomlBlock = regexp.MustCompile("(?s)```toml\n(.*?)```")

// TestDocExamples loads every toml block of the root README and of each
// plugin's README as ferry check would, plugins' own settings included, so
// the manuals cannot drift from the code. A block that opens with
// "# needs:" depends on something not compiled in and is skipped. The
// root README's blocks are loaded as if from testdata/docs, so the files
// they name relative to the configuration (the TLS listener's test
// certificates, tls/*.pem) are found there.
func TestDocExamples(t *testing.T) {
	files, err := filepath.Glob("../plugins/*/README.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "../README.md")
	plugins, _ := filepath.Glob("../plugins/*/")
	blocks := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range tomlBlock.FindAllStringSubmatch(string(data), -1) {
			src := m[1]
			if strings.HasPrefix(src, "# needs:") {
				continue
			}
			blocks++
			name := filepath.Base(filepath.Dir(f)) + "/" + filepath.Base(f) + "#" + string(rune('0'+i))
			t.Run(name, func(t *testing.T) {
				file := name
				if rest, ok := strings.CutPrefix(name, "../"); ok {
					file = "testdata/docs/" + rest
				}
				cfg, err := config.Parse(file, []byte(src))
				if err != nil {
					t.Fatalf("config:\n%v\nblock:\n%s", err, src)
				}
				srv, err := server.New(cfg, zerolog.Nop())
				if err != nil {
					t.Fatalf("plugins:\n%v\nblock:\n%s", err, src)
				}
				srv.Close()
			})
		}
	}
	if blocks < len(plugins) {
		t.Fatalf("found %d toml blocks, want at least one per plugin (%d)", blocks, len(plugins))
	}
}
