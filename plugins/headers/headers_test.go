package headers

import (
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

// newPlugin makes an instance from a TOML table body, through the real
// config decoder, as New returns it.
func newPlugin(body string) (plugins.Plugin, error) {
	cfg, err := config.Parse("t.toml", []byte("[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"h\"]\n[[plugin]]\nname = \"h\"\ntype = \"headers\"\n"+body))
	if err != nil {
		return nil, err
	}
	pc := &cfg.Plugins[0]
	p, err := New(plugins.NewEnv("h", zerolog.Nop(), plugins.NewServices(), pc.Decode))
	if err != nil {
		return nil, pc.WrapError(err)
	}
	return p, nil
}

// build is newPlugin for the request side: the *Plugin either way.
func build(t *testing.T, body string) (*Plugin, error) {
	t.Helper()
	p, err := newPlugin(body)
	if err != nil {
		return nil, err
	}
	if rp, ok := p.(*ResponsePlugin); ok {
		return rp.Plugin, nil
	}
	return p.(*Plugin), nil
}

func TestOnHTTPRequest(t *testing.T) {
	client := &net.TCPAddr{IP: net.ParseIP("198.51.100.7"), Port: 4000}
	tests := []struct {
		name, conf string
		in         http.Header
		want       map[string]string // "" means absent
	}{
		{
			name: "remove set add",
			conf: "remove = [\"cookie\"]\nset = { \"X-Env\" = \"prod\", \"user-agent\" = \"ferry\" }\nadd = { \"X-Tag\" = \"b\" }\n",
			in:   http.Header{"Cookie": {"a=1"}, "User-Agent": {"curl"}, "X-Tag": {"a"}},
			want: map[string]string{"Cookie": "", "X-Env": "prod", "User-Agent": "ferry", "X-Tag": "a,b"},
		},
		{
			name: "via and forwarded appended",
			conf: "via = true\nvia_name = \"edge\"\nx_forwarded_for = true\n",
			in:   http.Header{"Via": {"1.0 lb"}, "X-Forwarded-For": {"203.0.113.1"}},
			want: map[string]string{"Via": "1.0 lb, 1.1 edge", "X-Forwarded-For": "203.0.113.1, 198.51.100.7"},
		},
		{
			name: "via fresh",
			conf: "via = true\n",
			in:   http.Header{},
			want: map[string]string{"Via": "1.1 ferry", "X-Forwarded-For": ""},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := build(t, tt.conf)
			if err != nil {
				t.Fatal(err)
			}
			req := &http.Request{Header: tt.in, ProtoMajor: 1, ProtoMinor: 1}
			if err := p.OnHTTPRequest(&plugins.Session{Client: client}, req); err != nil {
				t.Fatal(err)
			}
			checkHeader(t, "request", req.Header, tt.want)
		})
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct{ name, conf, want string }{
		{"bad name", "remove = [\"Bad Header\"]\n", `t.toml:7:11: plugin[0].remove[0]: "Bad Header" is not a valid header name`},
		{"bad value", "set = { \"X-A\" = \"a\\r\\nInjected: 1\" }\n", "plugin[0].set.X-A: value has characters not allowed in a header"},
		{"via name without via", "via_name = \"x\"\n", "plugin[0].via_name: set via = true to send it"},
		{"unknown key", "viaa = true\n", "t.toml:7:1: plugin[0].viaa: unknown key"},
		{"bad response name", "[plugin.response]\nremove = [\"ok\", \"Bad:Name\"]\n", `t.toml:8:17: plugin[0].response.remove[1]: "Bad:Name" is not a valid header name`},
		{"bad response value", "response = { set = { \"X-A\" = \"a\\nb\" } }\n", "plugin[0].response.set.X-A: value has characters not allowed in a header"},
		{"bad response add name", "[plugin.response]\nadd = { \"X A\" = \"1\" }\n", `plugin[0].response.add: "X A" is not a valid header name`},
		{"unknown response key", "[plugin.response]\nvia = true\n", "plugin[0].response.via: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.conf)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}
