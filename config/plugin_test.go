package config

import (
	"errors"
	"reflect"
	"testing"
	"time"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
)

// pluginSrc has two plugin instances; the second starts on line 6.
const pluginSrc = l0 + `[[plugin]]
name = "log"
file = "/tmp/x.log"

[[plugin]]
name = "dump"
type = "hexdump"
max_bytes = "4KiB"
window = "10s"
sample = { every = 3, ports = [80, 443] }
`

type dumpOptions struct {
	MaxBytes Size     `toml:"max_bytes"`
	Window   Duration `toml:"window"`
	Sample   struct {
		Every int   `toml:"every"`
		Ports []int `toml:"ports"`
	} `toml:"sample"`
}

func TestPluginDecode(t *testing.T) {
	c := parseOK(t, pluginSrc)
	if got := c.Plugins[1]; got.Name != "dump" || got.Type != "hexdump" {
		t.Fatalf("plugin[1]: got name %q type %q, want dump, hexdump", got.Name, got.Type)
	}
	var opts dumpOptions
	if err := c.Plugins[1].Decode(&opts); err != nil {
		t.Fatalf("Decode: got error\n%v", err)
	}
	if opts.MaxBytes != 4*units.KiB || opts.Window.D() != 10*time.Second || opts.Sample.Every != 3 || !reflect.DeepEqual(opts.Sample.Ports, []int{80, 443}) {
		t.Fatalf("Decode: got %+v", opts)
	}
}

func TestPluginDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		opts string // the second plugin's options, from line 9
		into any
		want string
	}{
		{
			name: "unknown key",
			opts: "max_bytes = \"4KiB\"\nmax_byte = 1\n",
			into: &dumpOptions{},
			want: "test.toml:10:1: plugin[1].max_byte: unknown key",
		},
		{
			name: "unknown keys and bad values, all of them",
			opts: "max_bytes = \"4 parsecs\"\nwindow = 30\ncolour = true\nsample = { every = \"often\", extra = 1 }\n",
			into: &dumpOptions{},
			want: `test.toml:9:13: plugin[1].max_bytes: invalid size "4 parsecs": unknown unit "parsecs" (use B, KiB, MiB, GiB, KB, MB or GB)` + "\n" +
				`test.toml:10:10: plugin[1].window: must be a string with a unit, like "30s" (a bare number has no unit)` + "\n" +
				"test.toml:11:1: plugin[1].colour: unknown key\n" +
				"test.toml:12:20: plugin[1].sample.every: must be an integer, not a string\n" +
				"test.toml:12:29: plugin[1].sample.extra: unknown key",
		},
		{
			name: "array element",
			opts: "sample.ports = [80, \"https\"]\n",
			into: &dumpOptions{},
			want: "test.toml:9:21: plugin[1].sample.ports[1]: must be an integer, not a string",
		},
		{
			name: "sub-table",
			opts: "[plugin.sample]\nevery = 1\nnope = 2\n",
			into: &dumpOptions{},
			want: "test.toml:11:1: plugin[1].sample.nope: unknown key",
		},
		{
			name: "options into an empty struct",
			opts: "max_bytes = 1\n",
			into: &struct{}{},
			want: "test.toml:9:1: plugin[1].max_bytes: unknown key",
		},
		{
			name: "integer overflow",
			opts: "sample.every = 99999999999\n",
			into: &struct {
				Sample struct {
					Every int8 `toml:"every"`
				} `toml:"sample"`
			}{},
			want: "test.toml:9:16: plugin[1].sample.every: integer value 99999999999 cannot be stored in int8",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := l0 + "[[plugin]]\nname = \"log\"\n\n[[plugin]]\nname = \"dump\"\ntype = \"hexdump\"\n" + tt.opts
			c := parseOK(t, src)
			err := c.Plugins[1].Decode(tt.into)
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Decode: got %T %v, want *Error", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Decode: got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestPluginDecodeKeepsDefaults(t *testing.T) {
	c := parseOK(t, l0+"[[plugin]]\nname = \"dump\"\ntype = \"hexdump\"\nwindow = \"1s\"\n")
	opts := dumpOptions{MaxBytes: 64 * units.KiB}
	if err := c.Plugins[0].Decode(&opts); err != nil {
		t.Fatalf("Decode: got %v", err)
	}
	if opts.MaxBytes != 64*units.KiB || opts.Window.D() != time.Second {
		t.Fatalf("Decode: got max_bytes %v window %v, want 64KiB (default kept), 1s", opts.MaxBytes, opts.Window)
	}
}

func TestPluginDecodeEmpty(t *testing.T) {
	c := parseOK(t, l0+"[[plugin]]\nname = \"log\"\n")
	opts := dumpOptions{MaxBytes: 1}
	if err := c.Plugins[0].Decode(&opts); err != nil || opts.MaxBytes != 1 {
		t.Fatalf("Decode of an empty table: got %v, %+v, want nil and the defaults", err, opts)
	}
	var zero PluginConfig
	if err := zero.Decode(&opts); err != nil {
		t.Fatalf("Decode of a zero PluginConfig: got %v, want nil", err)
	}
}

func TestPluginWhereAndWrapError(t *testing.T) {
	c := parseOK(t, pluginSrc)
	p := &c.Plugins[1]
	if got, want := p.Where(), "test.toml:7:3: plugin[1]"; got != want {
		t.Fatalf("Where: got %q, want %q", got, want)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{name: "nil", err: nil, want: ""},
		{name: "key of the table", err: plugins.Errorf("window", "must be at least 1m"), want: "test.toml:11:1: plugin[1].window: must be at least 1m"},
		{name: "no key", err: errors.New("open /x: permission denied"), want: "test.toml:7:3: plugin[1]: open /x: permission denied"},
		{name: "already positioned", err: &Error{Problems: []Problem{{File: "f", Line: 1, Col: 1, Msg: "m"}}}, want: "f:1:1: m"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := p.WrapError(tt.err)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("WrapError: got %q, want %q", got, tt.want)
			}
		})
	}
	zero := PluginConfig{Name: "x"}
	if got, want := zero.Where(), "plugin x"; got != want {
		t.Fatalf("Where of a PluginConfig not from a file: got %q, want %q", got, want)
	}
}

// Plugin option structs may embed shared structs and leave out tags, as
// go-toml allows; only tagged keys are case-sensitive.
func TestPluginDecodeStructShapes(t *testing.T) {
	type Common struct {
		Timeout Duration `toml:"timeout"`
	}
	var opts struct {
		Common
		Path  string // untagged: matched ignoring case, like go-toml does
		Peers []CIDR `toml:"peers"`
		When  any    `toml:"when"`
	}
	c := parseOK(t, l0+"[[plugin]]\nname = \"log\"\ntimeout = \"2s\"\npath = \"/x\"\npeers = [\"10.0.0.1\"]\nwhen = 1979-05-27\n")
	if err := c.Plugins[0].Decode(&opts); err != nil {
		t.Fatalf("Decode: got %v", err)
	}
	if opts.Timeout.D() != 2*time.Second || opts.Path != "/x" || len(opts.Peers) != 1 || opts.When == nil {
		t.Fatalf("Decode: got %+v", opts)
	}

	c = parseOK(t, l0+"[[plugin]]\nname = \"log\"\nTimeout = \"2s\"\npeers = 5\nwhen = 1\n")
	err := c.Plugins[0].Decode(&opts)
	want := "test.toml:5:1: plugin[0].Timeout: unknown key (keys are case-sensitive: did you mean \"timeout\"?)\n" +
		"test.toml:6:9: plugin[0].peers: must be an array, not an integer"
	if err == nil || err.Error() != want {
		t.Fatalf("Decode: got\n%v\nwant\n%s", err, want)
	}
}

func TestWrapErrorJoined(t *testing.T) {
	cfg, err := Parse("t.toml", []byte("[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"p\"]\n[[plugin]]\nname = \"p\"\ntype = \"log\"\nfile = \"x\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	pc := &cfg.Plugins[0]
	got := pc.WrapError(errors.Join(plugins.Errorf("file", "no such directory"), errors.New("something else")))
	want := "t.toml:4:3: plugin[0]: something else\nt.toml:7:1: plugin[0].file: no such directory"
	if got == nil || got.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", got, want)
	}
}

// TypeKey names the key the server reports an unknown type at, or "" when
// Load has already reported the table's name or type.
func TestPluginTypeKey(t *testing.T) {
	tests := []struct {
		name  string
		table string
		want  string
	}{
		{name: "type set", table: "name = \"a\"\ntype = \"x\"\n", want: "type"},
		{name: "type from name", table: "name = \"x\"\n", want: "name"},
		{name: "type not a string", table: "name = \"x\"\ntype = 5\n", want: ""},
		{name: "no name", table: "type = \"x\"\n", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(l0+"[[plugin]]\n"+tt.table))
			var ce *Error
			if !errors.As(err, &ce) || ce.Partial == nil {
				c := parseOK(t, l0+"[[plugin]]\n"+tt.table)
				if got := c.Plugins[0].TypeKey(); got != tt.want {
					t.Fatalf("TypeKey: got %q, want %q", got, tt.want)
				}
				return
			}
			if got := ce.Partial.Plugins[0].TypeKey(); got != tt.want {
				t.Fatalf("TypeKey of the partial config: got %q, want %q", got, tt.want)
			}
		})
	}
}
