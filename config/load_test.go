package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"ferry/plugins/pkg/units"
)

// parseOK parses src and fails the test on error.
func parseOK(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatalf("Parse: got error\n%v\nwant none", err)
	}
	return c
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "minimal gets every default",
			src:  "[[listener]]\nlisten = \"127.0.0.1:8080\"\n",
			check: func(t *testing.T, c *Config) {
				want := Config{
					File:     "test.toml",
					Log:      Log{Level: "info", Format: "console"},
					Defaults: Defaults{HandshakeTimeout: Duration(10 * time.Second), DialTimeout: Duration(10 * time.Second), IdleTimeout: Duration(5 * time.Minute), DrainTimeout: Duration(30 * time.Second), BufferSize: 128 * units.KiB, MaxBufferSize: units.MiB},
					Listeners: []Listener{{Name: "listener-0", Listen: "127.0.0.1:8080", Protocols: []string{"http", "socks5", "socks4"},
						ProxyProtocol: "off", SendProxyProtocol: "off", MaxConnections: ptr(10000)}},
					Limits: Limits{MaxClientHandshakes: ptr(64), MaxHeaderBytes: 64 * units.KiB, MaxHeaders: 100, MaxResponseHeaderBytes: 64 * units.KiB, MaxBufferedBodyBytes: 8 * units.MiB},
					State:  State{OnError: "fail_open", FlushInterval: Duration(time.Second), Lease: Duration(DefaultLease)},
				}
				want.idx = c.idx // positions, for Where
				if !reflect.DeepEqual(*c, want) {
					t.Fatalf("got %+v,\nwant %+v", *c, want)
				}
				s := c.Effective(&c.Listeners[0])
				wantS := Settings{HandshakeTimeout: 10 * time.Second, DialTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, BufferSize: 128 << 10, MaxBufferSize: 1 << 20, MaxConnections: 10000}
				if s != wantS {
					t.Fatalf("Effective: got %+v, want %+v", s, wantS)
				}
			},
		},
		{
			name: "explicit zeros disable, absent keys default",
			src: `[defaults]
idle_timeout = "0s"
drain_timeout = 0
[[listener]]
listen = "127.0.0.1:8080"
max_connections = 0
[[listener]]
listen = "127.0.0.1:8081"
idle_timeout = "0s"
[[listener]]
listen = "127.0.0.1:8082"
`,
			check: func(t *testing.T, c *Config) {
				if c.Defaults.IdleTimeout != 0 || c.Defaults.DrainTimeout != 0 {
					t.Fatalf("idle, drain: got %v, %v, want 0s, 0s", c.Defaults.IdleTimeout, c.Defaults.DrainTimeout)
				}
				if got := c.Effective(&c.Listeners[0]).MaxConnections; got != 0 {
					t.Fatalf("max_connections: got %d, want 0 (unlimited)", got)
				}
				if got := c.Effective(&c.Listeners[2]).MaxConnections; got != 10000 {
					t.Fatalf("absent max_connections: got %d, want 10000", got)
				}
				if got := c.Effective(&c.Listeners[1]).IdleTimeout; got != 0 {
					t.Fatalf("listener idle_timeout: got %v, want 0", got)
				}
			},
		},
		{
			name: "listener overrides",
			src: `[[listener]]
listen = "127.0.0.1:8080"
handshake_timeout = "2s"
dial_timeout = "3s"
idle_timeout = "1h"
buffer_size = 4096
[[listener]]
listen = "127.0.0.1:8081"
buffer_size = "2MiB"
[[listener]]
listen = "127.0.0.1:8082"
buffer_size = "64KiB"
max_buffer_size = "256KiB"
`,
			check: func(t *testing.T, c *Config) {
				got := c.Effective(&c.Listeners[0])
				want := Settings{HandshakeTimeout: 2 * time.Second, DialTimeout: 3 * time.Second, IdleTimeout: time.Hour, BufferSize: 4096, MaxBufferSize: 1 << 20, MaxConnections: 10000}
				// max_buffer_size is never below buffer_size.
				if s := c.Effective(&c.Listeners[1]); s.BufferSize != 2<<20 || s.MaxBufferSize != 2<<20 {
					t.Errorf("buffer_size 2MiB: buffer %d, max %d; want both 2MiB", s.BufferSize, s.MaxBufferSize)
				}
				if s := c.Effective(&c.Listeners[2]); s.BufferSize != 64<<10 || s.MaxBufferSize != 256<<10 {
					t.Errorf("max_buffer_size 256KiB: buffer %d, max %d", s.BufferSize, s.MaxBufferSize)
				}
				if got != want {
					t.Fatalf("Effective: got %+v, want %+v", got, want)
				}
			},
		},
		{
			name: "listen forms",
			src: `[[listener]]
listen = "[::1]:8080"
[[listener]]
listen = "localhost:8080"
[[listener]]
listen = ":8080"
[[listener]]
listen = "127.0.0.1:0"
[[listener]]
listen = "127.0.0.1:0"
`,
			check: func(t *testing.T, c *Config) {
				if len(c.Listeners) != 5 {
					t.Fatalf("got %d listeners, want 5", len(c.Listeners))
				}
			},
		},
		{
			name: "tcp listener",
			src:  "[[listener]]\nlisten = \"127.0.0.1:1\"\nprotocols = [\"tcp\"]\ntarget = \"db.example:5432\"\n",
			check: func(t *testing.T, c *Config) {
				if got := c.Listeners[0]; got.Target != "db.example:5432" || !reflect.DeepEqual(got.Protocols, []string{"tcp"}) {
					t.Fatalf("got %+v, want a tcp listener to db.example:5432", got)
				}
			},
		},
		{
			name: "inline tables",
			src:  "log = { level = \"debug\", format = \"json\" }\nlistener = [{ name = \"a\", listen = \"127.0.0.1:1\", trusted_proxies = [\"10.0.0.0/8\"], proxy_protocol = \"optional\" }]\n",
			check: func(t *testing.T, c *Config) {
				if c.Log != (Log{Level: "debug", Format: "json"}) {
					t.Fatalf("log: got %+v, want debug/json", c.Log)
				}
				if got := c.Listeners[0].TrustedProxies; len(got) != 1 || got[0].String() != "10.0.0.0/8" {
					t.Fatalf("trusted_proxies: got %v, want [10.0.0.0/8]", got)
				}
			},
		},
		{
			name: "plugins, upstreams and routes",
			src: `[[listener]]
listen = "127.0.0.1:1"
plugins = ["log", "dump"]
[[plugin]]
name = "log"
[[plugin]]
name = "dump"
type = "hexdump"
max_bytes = "4KiB"
[[upstream]]
name = "a"
url = "socks5://u:p@10.0.0.1:1080"
send_proxy_protocol = "v2"
[[upstream]]
name = "b"
url = "http://proxy.example:3128"
via = "a"
[[upstream]]
name = "out"
url = "direct"
[[upstream]]
name = "g"
members = ["a", "b"]
[[route]]
match = ["*.corp.example", "10.0.0.0/8", "192.0.2.1"]
upstream = "g"
[[route]]
match = ["ads.example"]
reject = true
`,
			check: func(t *testing.T, c *Config) {
				if c.Plugins[0].Type != "log" || c.Plugins[1].Type != "hexdump" {
					t.Fatalf("plugin types: got %q, %q, want log, hexdump", c.Plugins[0].Type, c.Plugins[1].Type)
				}
				if c.Upstreams[0].SendProxyProtocol != "v2" || c.Upstreams[1].SendProxyProtocol != "off" {
					t.Fatalf("send_proxy_protocol: got %q, %q, want v2, off", c.Upstreams[0].SendProxyProtocol, c.Upstreams[1].SendProxyProtocol)
				}
				if c.Upstreams[3].Strategy != "failover" || c.Upstreams[0].Strategy != "" {
					t.Fatalf("strategy: got %q, %q, want failover, empty", c.Upstreams[3].Strategy, c.Upstreams[0].Strategy)
				}
				if !c.Routes[1].Reject {
					t.Fatalf("route[1].reject: got false, want true")
				}
			},
		},
		{
			name: "CRLF line endings",
			src:  "[[listener]]\r\nlisten = \"127.0.0.1:1\"\r\n",
			check: func(t *testing.T, c *Config) {
				if c.Listeners[0].Listen != "127.0.0.1:1" {
					t.Fatalf("listen: got %q, want 127.0.0.1:1", c.Listeners[0].Listen)
				}
			},
		},
		{
			name: "untagged-looking keys are exact",
			src:  "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = []\ntrusted_proxies = []\n",
			check: func(t *testing.T, c *Config) {
				if len(c.Listeners[0].Plugins) != 0 {
					t.Fatalf("plugins: got %v, want none", c.Listeners[0].Plugins)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, parseOK(t, tt.src))
		})
	}
}

func ptr[T any](v T) *T { return &v }

// l0 is a valid listener for tests of other sections; it takes lines 1-2.
const l0 = "[[listener]]\nlisten = \"127.0.0.1:8080\"\n"

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		// Syntax.
		{name: "syntax: missing value", src: "[log]\nlevel =\n", want: "test.toml:2:8: toml syntax: unexpected character U+000A at start of value"},
		{name: "syntax: unclosed table", src: "[log\n", want: "test.toml:1:5: toml syntax: expected ']' to close table name"},
		{name: "syntax: duplicate key", src: l0 + "name = \"a\"\nname = \"b\"\n", want: "test.toml:4:1: toml syntax: key name is already defined"},

		// Unknown keys.
		{name: "unknown top-level key", src: l0 + "[server]\nport = 1\n", want: "test.toml:3:2: server: unknown key"},
		{name: "unknown top-level value", src: "verbose = true\n" + l0, want: "test.toml:1:1: verbose: unknown key"},
		{name: "unknown listener key", src: l0 + "lisen = \"x\"\n", want: "test.toml:3:1: listener[0].lisen: unknown key"},
		{name: "unknown key in second listener", src: l0 + "[[listener]]\nlisten = \"127.0.0.1:1\"\nmax_conns = 5\n", want: "test.toml:5:1: listener[1].max_conns: unknown key"},
		{name: "unknown nested table", src: l0 + "[listener.ssl]\ncert = \"x\"\n", want: "test.toml:3:2: listener[0].ssl: unknown key"},
		{name: "unknown dotted key", src: l0 + "ssl.cert = \"x\"\n", want: "test.toml:3:1: listener[0].ssl: unknown key"},
		{name: "unknown key in inline table", src: "log = { level = \"info\", colour = true }\n" + l0, want: "test.toml:1:25: log.colour: unknown key"},
		{name: "unknown keys all reported", src: "[log]\nlvl = 1\n[defaults]\ntimeout = \"1s\"\n" + l0 + "x = 1\n",
			want: "test.toml:2:1: log.lvl: unknown key\ntest.toml:4:1: defaults.timeout: unknown key\ntest.toml:7:1: listener[0].x: unknown key"},
		{name: "keys are case-sensitive", src: "[log]\nLevel = \"info\"\n" + l0, want: `test.toml:2:1: log.Level: unknown key (keys are case-sensitive: did you mean "level"?)`},

		// Values that fail to decode, at the value's position.
		{name: "bad duration", src: "[defaults]\ndial_timeout = \"5x\"\n" + l0, want: `test.toml:2:16: defaults.dial_timeout: invalid duration "5x": want a number with a unit (ns, us, ms, s, m, h), like "10s"`},
		{name: "negative duration", src: l0 + "idle_timeout = \"-1s\"\n", want: `test.toml:3:16: listener[0].idle_timeout: invalid duration "-1s": must not be negative`},
		{name: "duration without unit", src: "[defaults]\nidle_timeout = 300\n" + l0, want: `test.toml:2:16: defaults.idle_timeout: must be a string with a unit, like "300s" (a bare number has no unit)`},
		{name: "duration as float", src: "[defaults]\nidle_timeout = 1.5\n" + l0, want: `test.toml:2:16: defaults.idle_timeout: invalid duration "1.5": want a number with a unit (ns, us, ms, s, m, h), like "10s"`},
		{name: "bad size", src: "[defaults]\nbuffer_size = \"32QB\"\n" + l0, want: `test.toml:2:15: defaults.buffer_size: invalid size "32QB": unknown unit "QB" (use B, KiB, MiB, GiB, KB, MB or GB)`},
		{name: "negative size", src: l0 + "buffer_size = -4096\n", want: `test.toml:3:15: listener[0].buffer_size: invalid size -4096: must not be negative`},
		{name: "bad CIDR", src: l0 + "proxy_protocol = \"optional\"\ntrusted_proxies = [\"10.0.0.0/8\",\n  \"10.1.2.3/16\"]\n", want: `test.toml:5:3: listener[0].trusted_proxies[1]: invalid CIDR "10.1.2.3/16": address has bits set beyond /16 (did you mean 10.1.0.0/16?)`},
		{name: "wrong type", src: "[[listener]]\nlisten = 8080\n", want: "test.toml:2:10: listener[0].listen: must be a string, not an integer"},
		{name: "wrong type in array", src: l0 + "plugins = [\"a\", 2]\n", want: "test.toml:3:17: listener[0].plugins[1]: must be a string, not an integer"},
		{name: "nested array", src: l0 + "protocols = [[\"http\"]]\n", want: "test.toml:3:14: listener[0].protocols[0]: must be a string, not an array"},
		{name: "table instead of array of tables", src: "[listener]\nlisten = \"127.0.0.1:1\"\n", want: "test.toml:1:2: listener: must be an array of tables: write [[listener]]"},
		{name: "decode and validation problems together", src: "[log]\nlevel = \"loud\"\n[defaults]\ndial_timeout = \"soon\"\n" + l0 + "bogus = 1\n",
			want: "test.toml:2:1: log.level: unknown value \"loud\": want \"debug\", \"info\", \"warn\" or \"error\"\n" +
				"test.toml:4:16: defaults.dial_timeout: invalid duration \"soon\": want a number with a unit (ns, us, ms, s, m, h), like \"10s\"\n" +
				"test.toml:7:1: listener[0].bogus: unknown key"},

		// [log] and [defaults].
		{name: "log level", src: "[log]\nlevel = \"verbose\"\n" + l0, want: `test.toml:2:1: log.level: unknown value "verbose": want "debug", "info", "warn" or "error"`},
		{name: "log format", src: "[log]\nformat = \"xml\"\n" + l0, want: `test.toml:2:1: log.format: unknown value "xml": want "console" or "json"`},
		{name: "handshake_timeout zero", src: "[defaults]\nhandshake_timeout = \"0s\"\n" + l0, want: "test.toml:2:1: defaults.handshake_timeout: must be greater than 0"},
		{name: "dial_timeout zero", src: "[defaults]\ndial_timeout = 0\n" + l0, want: "test.toml:2:1: defaults.dial_timeout: must be greater than 0"},
		{name: "listener dial_timeout zero", src: l0 + "dial_timeout = \"0s\"\n", want: "test.toml:3:1: listener[0].dial_timeout: must be greater than 0"},
		{name: "buffer too small", src: "[defaults]\nbuffer_size = \"256B\"\n" + l0, want: "test.toml:2:1: defaults.buffer_size: 256B is out of range: want 512B to 16MiB"},
		{name: "buffer too large", src: l0 + "buffer_size = \"17MiB\"\n", want: "test.toml:3:1: listener[0].buffer_size: 17MiB is out of range: want 512B to 16MiB"},
		{name: "max buffer too large", src: l0 + "max_buffer_size = \"64MiB\"\n", want: "test.toml:3:1: listener[0].max_buffer_size: 64MiB is out of range: want 512B to 16MiB"},
		{name: "default max buffer too small", src: "[defaults]\nmax_buffer_size = 100\n" + l0, want: "test.toml:2:1: defaults.max_buffer_size: 100B is out of range: want 512B to 16MiB"},

		// Listeners.
		{name: "no listener", src: "[log]\nlevel = \"info\"\n", want: "test.toml:1:1: listener: missing: at least one [[listener]] is required"},
		{name: "missing listen", src: "[log]\n\n[[listener]]\nname = \"a\"\n", want: `test.toml:3:3: listener[0].listen: missing: set the address to listen on, like "127.0.0.1:8080"`},
		{name: "listen without port", src: "[[listener]]\nlisten = \"127.0.0.1\"\n", want: `test.toml:2:1: listener[0].listen: invalid address "127.0.0.1": want host:port, like "127.0.0.1:8080" or "[::1]:8080"`},
		{name: "listen bad port", src: "[[listener]]\nlisten = \"127.0.0.1:70000\"\n", want: `test.toml:2:1: listener[0].listen: invalid address "127.0.0.1:70000": port 70000 is out of range 0-65535`},
		{name: "listen named port", src: "[[listener]]\nlisten = \"127.0.0.1:http\"\n", want: `test.toml:2:1: listener[0].listen: invalid address "127.0.0.1:http": port "http" is not a number`},
		{name: "listen unbracketed IPv6", src: "[[listener]]\nlisten = \"::1:8080\"\n", want: `test.toml:2:1: listener[0].listen: invalid address "::1:8080": want host:port, like "127.0.0.1:8080" or "[::1]:8080"`},
		{name: "listen bad host", src: "[[listener]]\nlisten = \"bad host:80\"\n", want: `test.toml:2:1: listener[0].listen: invalid address "bad host:80": "bad host" is neither an IP address nor a host name`},
		{name: "duplicate names", src: "[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:1\"\n[[listener]]\nname = \"a\"\nlisten = \"127.0.0.1:2\"\n", want: `test.toml:5:1: listener[1].name: duplicate name "a" (also listener[0])`},
		{name: "default name taken", src: "[[listener]]\nname = \"listener-1\"\nlisten = \"127.0.0.1:1\"\n[[listener]]\nlisten = \"127.0.0.1:2\"\n", want: `test.toml:4:3: listener[1].name: duplicate name "listener-1" (also listener[0])`},
		{name: "duplicate listen", src: l0 + l0, want: `test.toml:4:1: listener[1].listen: duplicate address "127.0.0.1:8080" (also listener[0])`},
		{name: "unknown protocol", src: l0 + "protocols = [\"http\", \"socks\"]\n", want: `test.toml:3:22: listener[0].protocols[1]: unknown protocol "socks": want http, socks5, socks4, or tcp alone`},
		{name: "duplicate protocol", src: l0 + "protocols = [\"http\", \"http\"]\n", want: `test.toml:3:22: listener[0].protocols[1]: "http" is listed twice`},
		{name: "tcp with others", src: l0 + "protocols = [\"tcp\", \"http\"]\ntarget = \"a:1\"\n", want: `test.toml:3:1: listener[0].protocols: "tcp" forwards to a fixed target and cannot be combined with other protocols`},
		{name: "tcp without target", src: l0 + "protocols = [\"tcp\"]\n", want: `test.toml:1:3: listener[0].target: missing: a tcp listener needs target = "host:port"`},
		{name: "tcp target port 0", src: l0 + "protocols = [\"tcp\"]\ntarget = \"db:0\"\n", want: `test.toml:4:1: listener[0].target: invalid address "db:0": port 0 is out of range 1-65535`},
		{name: "tcp target without host", src: l0 + "protocols = [\"tcp\"]\ntarget = \":5432\"\n", want: `test.toml:4:1: listener[0].target: invalid address ":5432": missing host`},
		{name: "target without tcp", src: l0 + "target = \"db:5432\"\n", want: `test.toml:3:1: listener[0].target: only a tcp listener has a target: set protocols = ["tcp"]`},
		{name: "proxy_protocol value", src: l0 + "proxy_protocol = \"on\"\n", want: `test.toml:3:1: listener[0].proxy_protocol: unknown value "on": want "off", "optional" or "required"`},
		{name: "proxy_protocol without trust", src: l0 + "proxy_protocol = \"required\"\n", want: `test.toml:1:3: listener[0].trusted_proxies: missing: proxy_protocol = "required" needs the addresses of the load balancers allowed to send a PROXY header`},
		{name: "unknown plugin instance", src: l0 + "plugins = [\"auth\"]\n", want: `test.toml:3:12: listener[0].plugins[0]: no [[plugin]] named "auth"`},
		{name: "plugin listed twice", src: l0 + "plugins = [\"log\", \"log\"]\n[[plugin]]\nname = \"log\"\n", want: `test.toml:3:19: listener[0].plugins[1]: plugin "log" is listed twice`},
		{name: "negative max_connections", src: l0 + "max_connections = -1\n", want: "test.toml:3:1: listener[0].max_connections: must not be negative (0 means unlimited)"},
		{name: "negative limits.max_connections", src: l0 + "[limits]\nmax_connections = -5\n", want: "test.toml:4:1: limits.max_connections: must not be negative (0 means unlimited)"},
		{name: "negative max_client_handshakes", src: l0 + "[limits]\nmax_client_handshakes = -1\n", want: "test.toml:4:1: limits.max_client_handshakes: must not be negative (0 means unlimited)"},
		{name: "max_header_bytes too small", src: l0 + "[limits]\nmax_header_bytes = \"100B\"\n", want: "test.toml:4:1: limits.max_header_bytes: must be between 1KiB and 1MiB, got 100B"},
		{name: "max_headers zero", src: l0 + "[limits]\nmax_headers = 0\n", want: "test.toml:4:1: limits.max_headers: must be between 1 and 10000, got 0"},
		{name: "limits unknown key", src: l0 + "[limits]\nmax_header = 5\n", want: "test.toml:4:1: limits.max_header: unknown key"},

		// Plugins.
		{name: "plugin without name", src: l0 + "[[plugin]]\ntype = \"log\"\n", want: "test.toml:3:3: plugin[0].name: missing: every [[plugin]] needs a name, which listeners use in plugins = [...]"},
		{name: "plugin name not a string", src: l0 + "[[plugin]]\nname = 5\n", want: "test.toml:4:1: plugin[0].name: must be a string, not an integer"},
		{name: "duplicate plugin", src: l0 + "[[plugin]]\nname = \"log\"\n[[plugin]]\nname = \"log\"\n", want: `test.toml:6:1: plugin[1].name: duplicate name "log" (also plugin[0])`},

		// Upstreams.
		{name: "upstream without name", src: l0 + "[[upstream]]\nurl = \"direct\"\n", want: "test.toml:3:3: upstream[0].name: missing: every [[upstream]] needs a name, which routes and via use"},
		{name: "duplicate upstream", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\n[[upstream]]\nname = \"a\"\nurl = \"direct\"\n", want: `test.toml:7:1: upstream[1].name: duplicate name "a" (also upstream[0])`},
		{name: "upstream url and members", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\n[[upstream]]\nname = \"g\"\nurl = \"direct\"\nmembers = [\"a\"]\n", want: "test.toml:9:1: upstream[1].members: set url (one proxy) or members (a group), not both"},
		{name: "upstream neither url nor members", src: l0 + "[[upstream]]\nname = \"a\"\n", want: `test.toml:3:3: upstream[0].url: missing: set url (like "socks5://10.0.0.1:1080") or members (a group)`},
		{name: "upstream scheme", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"ftp://h:1\"\n", want: `test.toml:5:1: upstream[0].url: unknown scheme "ftp": want direct, socks5, socks5h, http or https`},
		{name: "upstream without port", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"socks5://user:secret@h\"\n", want: `test.toml:5:1: upstream[0].url: socks5 URL: invalid address "h": want host:port, like "127.0.0.1:8080" or "[::1]:8080"`},
		{name: "upstream without scheme", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"10.0.0.1:1080\"\n", want: `test.toml:5:1: upstream[0].url: missing scheme: want "direct" or scheme://host:port with scheme socks5, socks5h, http or https`},
		{name: "upstream with path", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"http://h:1/x\"\n", want: `test.toml:5:1: upstream[0].url: a proxy URL has no path, query or fragment`},
		{name: "via unknown", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\nvia = \"b\"\n", want: `test.toml:6:1: upstream[0].via: no [[upstream]] named "b"`},
		{name: "via loop", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"http://h:1\"\nvia = \"b\"\n[[upstream]]\nname = \"b\"\nurl = \"http://h:2\"\nvia = \"a\"\n", want: `test.toml:10:1: upstream[1].via: via loop: a -> b -> a`},
		{name: "via itself", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"http://h:1\"\nvia = \"a\"\n", want: `test.toml:6:1: upstream[0].via: via loop: a -> a`},
		{name: "via on a group", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\n[[upstream]]\nname = \"g\"\nmembers = [\"a\"]\nvia = \"a\"\n", want: `test.toml:9:1: upstream[1].via: a group has no via of its own: set via on its members`},
		{name: "send_proxy_protocol", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\nsend_proxy_protocol = \"v3\"\n", want: `test.toml:6:1: upstream[0].send_proxy_protocol: unknown value "v3": want "off", "v1" or "v2"`},
		{name: "strategy", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\n[[upstream]]\nname = \"g\"\nmembers = [\"a\"]\nstrategy = \"fastest\"\n", want: `test.toml:9:1: upstream[1].strategy: unknown value "fastest": want "failover", "round-robin", "random" or "least-connections"`},
		{name: "strategy without members", src: l0 + "[[upstream]]\nname = \"a\"\nurl = \"direct\"\nstrategy = \"random\"\n", want: `test.toml:6:1: upstream[0].strategy: only a group (members) has a strategy`},
		{name: "unknown member", src: l0 + "[[upstream]]\nname = \"g\"\nmembers = [\"x\"]\n", want: `test.toml:5:12: upstream[0].members[0]: no [[upstream]] named "x"`},
		{name: "members loop", src: l0 + "[[upstream]]\nname = \"g\"\nmembers = [\"h\"]\n[[upstream]]\nname = \"h\"\nmembers = [\"g\"]\n", want: `test.toml:8:12: upstream[1].members[0]: members loop: g -> h -> g`},

		// Routes.
		{name: "route empty match", src: l0 + "[[route]]\nmatch = []\nreject = true\n", want: `test.toml:4:1: route[0].match: empty: list destinations, or leave match out to match every destination`},
		{name: "route after catch-all", src: l0 + "[[route]]\nreject = true\n[[route]]\nmatch = [\"a\"]\nreject = true\n", want: `test.toml:5:3: route[1]: unreachable: route[0] before it matches every request`},
		{name: "route bad port", src: l0 + "[[route]]\nport = [\"9-1\"]\nreject = true\n", want: `test.toml:4:9: route[0].port[0]: invalid port range "9-1": 9 is above 1`},
		{name: "route bad client", src: l0 + "[[route]]\nclient = [\"10.0.0.300\"]\nreject = true\n", want: `test.toml:4:11: route[0].client[0]: invalid CIDR "10.0.0.300": want an address or a prefix, like "10.0.0.0/8" or "::1"`},
		{name: "upstream named direct", src: l0 + "[[upstream]]\nname = \"direct\"\nurl = \"socks5://10.0.0.1:1080\"\n", want: `test.toml:4:1: upstream[0].name: "direct" is reserved for the direct dial: choose another name`},
		{name: "ca_file on socks5", src: l0 + "[[upstream]]\nname = \"u\"\nurl = \"socks5://10.0.0.1:1080\"\nca_file = \"ca.pem\"\n", want: `test.toml:6:1: upstream[0].ca_file: only an https upstream has TLS settings`},
		{name: "ca_file missing", src: l0 + "[[upstream]]\nname = \"u\"\nurl = \"https://10.0.0.1:443\"\nca_file = \"/nonexistent/ca.pem\"\n", want: `test.toml:6:1: upstream[0].ca_file: open /nonexistent/ca.pem: no such file or directory`},
		{name: "health_check without target", src: l0 + "[[upstream]]\nname = \"u\"\nurl = \"socks5://10.0.0.1:1080\"\nhealth_check = { interval = \"1s\" }\n", want: `test.toml:6:1: upstream[0].health_check.target: missing: set the host:port to dial through the upstream, like "example.com:443"`},
		{name: "health_check on group", src: l0 + "[[upstream]]\nname = \"u\"\nurl = \"direct\"\n[[upstream]]\nname = \"g\"\nmembers = [\"u\"]\nhealth_check = { interval = \"1s\", target = \"a:1\" }\n", want: `test.toml:9:1: upstream[1].health_check: a group is as healthy as its members: set health_check on them`},
		{name: "route bad CIDR", src: l0 + "[[route]]\nmatch = [\"10.0.0.0/40\"]\nreject = true\n", want: `test.toml:4:10: route[0].match[0]: invalid CIDR "10.0.0.0/40": want a prefix, like "10.0.0.0/8" or "fd00::/8"`},
		{name: "route empty pattern", src: l0 + "[[route]]\nmatch = [\"\"]\nreject = true\n", want: `test.toml:4:10: route[0].match[0]: invalid destination "": want a name, *.name, .name, an IP address or a CIDR`},
		{name: "route neither upstream nor reject", src: l0 + "[[route]]\nmatch = [\"a\"]\n", want: `test.toml:3:3: route[0].upstream: missing: set upstream = "NAME" (or "direct") or reject = true`},
		{name: "route both", src: l0 + "[[upstream]]\nname = \"u\"\nurl = \"direct\"\n[[route]]\nmatch = [\"a\"]\nupstream = \"u\"\nreject = true\n", want: `test.toml:9:1: route[0].reject: set upstream or reject = true, not both`},
		{name: "route unknown upstream", src: l0 + "[[route]]\nmatch = [\"a\"]\nupstream = \"u\"\n", want: `test.toml:5:1: route[0].upstream: no [[upstream]] named "u"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse: got no error, want\n%s", tt.want)
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: got %T error %v, want *Error", err, err)
			}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Parse: got error\n%s\nwant\n%s", got, tt.want)
			}
			for _, p := range ce.Problems {
				if p.Line < 1 || p.Col < 1 || p.File != "test.toml" {
					t.Fatalf("problem %+v: got no position, want file and line:col", p)
				}
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	e := &Error{Problems: []Problem{
		{File: "f", Line: 9, Col: 1, Key: "b", Msg: "second"},
		{File: "f", Line: 2, Col: 5, Msg: "no key"},
		{File: "f", Line: 2, Col: 1, Key: "a", Msg: "first"},
	}}
	want := "f:2:1: a: first\nf:2:5: no key\nf:9:1: b: second"
	if got := e.Error(); got != want {
		t.Fatalf("Error(): got\n%s\nwant\n%s", got, want)
	}
	if e.Problems[0].Line != 9 {
		t.Fatalf("Error() reordered the problems: got first line %d, want 9", e.Problems[0].Line)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ferry.toml")
	if err := os.WriteFile(path, []byte(l0+"bogus = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + ":3:1: listener[0].bogus: unknown key"; err == nil || err.Error() != want {
		t.Fatalf("Load: got error %v, want %s", err, want)
	}

	if err := os.WriteFile(path, []byte(l0), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil || c.File != path {
		t.Fatalf("Load: got %v, %v, want a config from %s", c, err, path)
	}

	_, err = Load(filepath.Join(dir, "missing.toml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read config: ") {
		t.Fatalf("Load of a missing file: got %v, want a wrapped os.ErrNotExist", err)
	}
}

func TestDefault(t *testing.T) {
	c, err := Default()
	if err != nil {
		t.Fatalf("Default: got error\n%v", err)
	}
	if c.File != "<embedded>" {
		t.Fatalf("File: got %q, want <embedded>", c.File)
	}
	want := "<embedded>: ok: 1 listener (main 127.0.0.1:8080 http,socks5,socks4), 1 plugin, 0 upstreams, 0 routes"
	if got := c.Summary(); got != want {
		t.Fatalf("Summary: got %q, want %q", got, want)
	}
	if err := c.Plugins[0].Decode(&struct{}{}); err != nil {
		t.Fatalf("Decode of the log plugin's empty table: got %v, want nil", err)
	}
}

func TestExampleFile(t *testing.T) {
	c, err := Load("../ferry.example.toml")
	if err != nil {
		t.Fatalf("Load: got error\n%v", err)
	}
	want := "../ferry.example.toml: ok: 3 listeners (main 127.0.0.1:8080 http,socks5,socks4; main-v6 [::1]:8080 http,socks5,socks4; " +
		"db 127.0.0.1:15432 tcp->db.internal.example:5432), 2 plugins, 3 upstreams, 2 routes"
	if got := c.Summary(); got != want {
		t.Fatalf("Summary: got\n%s\nwant\n%s", got, want)
	}
	// The plugins' own options decode into structs like theirs.
	var logOpts struct {
		File string `toml:"file"`
	}
	if err := c.Plugins[0].Decode(&logOpts); err != nil {
		t.Fatalf("log options: got %v", err)
	}
	var dumpOpts struct {
		MaxBytes Size `toml:"max_bytes"`
	}
	if err := c.Plugins[1].Decode(&dumpOpts); err != nil || dumpOpts.MaxBytes != 4*units.KiB {
		t.Fatalf("hexdump options: got %v, %v, want 4KiB", dumpOpts.MaxBytes, err)
	}
}

func TestOverrideListen(t *testing.T) {
	src := "[[listener]]\nname = \"main\"\nlisten = \"127.0.0.1:8080\"\nplugins = [\"log\"]\nidle_timeout = \"1m\"\n" +
		"[[listener]]\nname = \"other\"\nlisten = \"127.0.0.1:9090\"\n[[plugin]]\nname = \"log\"\n"
	tests := []struct {
		name      string
		addrs     []string
		wantNames []string
		wantErr   string
	}{
		{name: "none keeps the file's", addrs: nil, wantNames: []string{"main", "other"}},
		{name: "one", addrs: []string{"0.0.0.0:3128"}, wantNames: []string{"main"}},
		{name: "three", addrs: []string{"127.0.0.1:1", "[::1]:1", "localhost:2"}, wantNames: []string{"main", "main-2", "main-3"}},
		{name: "invalid", addrs: []string{"127.0.0.1:1", "nope"}, wantErr: `--listen "nope": invalid address "nope"`},
		{name: "twice", addrs: []string{"127.0.0.1:1", "127.0.0.1:1"}, wantErr: `--listen "127.0.0.1:1": given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseOK(t, src)
			err := c.OverrideListen(tt.addrs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("OverrideListen: got %v, want an error containing %q", err, tt.wantErr)
				}
				if len(c.Listeners) != 2 {
					t.Fatalf("after an error: got %d listeners, want the file's 2", len(c.Listeners))
				}
				return
			}
			if err != nil {
				t.Fatalf("OverrideListen: got %v", err)
			}
			var names []string
			for i, l := range c.Listeners {
				names = append(names, l.Name)
				if tt.addrs != nil && l.Listen != tt.addrs[i] {
					t.Fatalf("listener %d: got listen %q, want %q", i, l.Listen, tt.addrs[i])
				}
				if tt.addrs != nil && (l.IdleTimeout == nil || l.IdleTimeout.D() != time.Minute || !reflect.DeepEqual(l.Plugins, []string{"log"})) {
					t.Fatalf("listener %d: got %+v, want the first listener's settings", i, l)
				}
			}
			if !reflect.DeepEqual(names, tt.wantNames) {
				t.Fatalf("names: got %v, want %v", names, tt.wantNames)
			}
			if len(tt.addrs) > 1 {
				c.Listeners[0].Plugins[0] = "changed"
				if c.Listeners[1].Plugins[0] != "log" {
					t.Fatalf("listeners share their plugins slice: got %q, want log", c.Listeners[1].Plugins[0])
				}
			}
		})
	}
}

func TestSummary(t *testing.T) {
	c := parseOK(t, "[[listener]]\nname = \"main\"\nlisten = \"127.0.0.1:8080\"\n[[listener]]\nname = \"fwd\"\nlisten = \"127.0.0.1:9000\"\nprotocols = [\"tcp\"]\ntarget = \"db:5432\"\n[[plugin]]\nname = \"log\"\n")
	want := "test.toml: ok: 2 listeners (main 127.0.0.1:8080 http,socks5,socks4; fwd 127.0.0.1:9000 tcp->db:5432), 1 plugin, 0 upstreams, 0 routes"
	if got := c.Summary(); got != want {
		t.Fatalf("Summary: got\n%s\nwant\n%s", got, want)
	}
}

func TestProxyProtocolSettings(t *testing.T) {
	const head = "[[listener]]\nlisten = \"127.0.0.1:1\"\n"
	tests := []struct {
		name, src, want string
	}{
		{"tcp sends v2 with tlvs", "[[listener]]\nlisten = \"127.0.0.1:1\"\nprotocols = [\"tcp\"]\ntarget = \"127.0.0.1:2\"\nproxy_protocol = \"required\"\ntrusted_proxies = [\"127.0.0.1\"]\nsend_proxy_protocol = \"v2\"\npass_tlvs = [\"alpn\", \"0xE0\", 5]\n", ""},
		{"send on a proxy listener", head + "send_proxy_protocol = \"v1\"\n", "test.toml:3:1: listener[0].send_proxy_protocol: only a tcp listener sends a PROXY header to its target; proxy listeners set it on an [[upstream]]"},
		{"bad send value", head + "protocols = [\"tcp\"]\ntarget = \"127.0.0.1:2\"\nsend_proxy_protocol = \"v3\"\n", `test.toml:5:1: listener[0].send_proxy_protocol: unknown value "v3": want "off", "v1" or "v2"`},
		{"tlvs need v2", head + "protocols = [\"tcp\"]\ntarget = \"127.0.0.1:2\"\nsend_proxy_protocol = \"v1\"\npass_tlvs = [\"alpn\"]\n", `test.toml:6:1: listener[0].pass_tlvs: TLVs travel only in a v2 header: set send_proxy_protocol = "v2"`},
		{"bad tlv name", head + "protocols = [\"tcp\"]\ntarget = \"127.0.0.1:2\"\nsend_proxy_protocol = \"v2\"\npass_tlvs = [\"alpm\"]\n", `invalid TLV type "alpm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse("test.toml", []byte(tt.src))
			if tt.want == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				if got := cfg.Listeners[0].PassTLVs; len(got) != 3 || got[0] != 1 || got[1] != 0xE0 || got[2] != 5 {
					t.Fatalf("pass_tlvs: got %v, want [1 224 5]", got)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
