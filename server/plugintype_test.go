package server

import (
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/config"
)

// TestUnknownPluginType: config does not look at the plugin registry, so
// a type that is not compiled in is reported where plugins are built, at
// the key that names it, by New (ferry run) and CheckPlugins (ferry check
// on a file with other problems) alike, and only once.
func TestUnknownPluginType(t *testing.T) {
	const l0 = "[[listener]]\nlisten = \"127.0.0.1:0\"\n"
	known := knownTypes()
	tests := []struct {
		name string
		src  string
		want string
	}{
		{name: "unknown plugin type", src: l0 + "[[plugin]]\nname = \"a\"\ntype = \"nosuch\"\n",
			want: `test.toml:5:1: plugin[0].type: unknown plugin type "nosuch" (` + known + `)`},
		{name: "unknown plugin type from name", src: l0 + "[[plugin]]\nname = \"nosuch\"\n",
			want: `test.toml:4:1: plugin[0].name: unknown plugin type "nosuch" (` + known + `)`},
		{name: "with a config problem", src: "[log]\nlevel = \"trace\"\n" + l0 + "[[plugin]]\nname = \"nosuch\"\n",
			want: `test.toml:2:1: log.level: unknown value "trace": want "debug", "info", "warn" or "error"` + "\n" +
				`test.toml:6:1: plugin[0].name: unknown plugin type "nosuch" (` + known + `)`},
		{name: "type not a string", src: l0 + "[[plugin]]\nname = \"nosuch\"\ntype = 5\n",
			want: "test.toml:5:1: plugin[0].type: must be a string, not an integer"},
		{name: "no name", src: l0 + "[[plugin]]\ntype = \"nosuch\"\n",
			want: "test.toml:3:3: plugin[0].name: missing: every [[plugin]] needs a name, which listeners use in plugins = [...]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := load(tt.src)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("got\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

// load parses src and builds its plugins as main's loadConfig and `ferry
// check` do.
func load(src string) error {
	cfg, err := config.Parse("test.toml", []byte(src))
	var ce *config.Error
	if errors.As(err, &ce) && ce.Partial != nil {
		return config.Join(err, CheckPlugins(ce.Partial))
	}
	if err != nil {
		return err
	}
	srv, err := New(cfg, zerolog.Nop())
	if err == nil {
		srv.Close()
		return nil
	}
	if cerr := CheckPlugins(cfg); cerr == nil || cerr.Error() != err.Error() {
		return errors.New(strings.Join([]string{"New and CheckPlugins disagree:", err.Error(), "vs", errString(cerr)}, "\n"))
	}
	return err
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
