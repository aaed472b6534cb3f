package config

import (
	"flag"
	"os"
	"testing"

	"ferry/plugins"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestMain registers stand-ins for the plugin types the test files use,
// unless the real ones are compiled in.
func TestMain(m *testing.M) {
	for _, typ := range []string{"log", "hexdump"} {
		if _, ok := plugins.Lookup(typ); !ok {
			plugins.Register(plugins.Registration{
				Type:        typ,
				Description: "test stand-in",
				New:         func(plugins.Env) (plugins.Plugin, error) { return nil, nil },
			})
		}
	}
	os.Exit(m.Run())
}
