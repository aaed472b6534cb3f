package headers

import (
	"net/http"
	"testing"

	"ferry/plugins"
)

func buildAny(t *testing.T, body string) plugins.Plugin {
	t.Helper()
	p, err := newPlugin(body)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOnHTTPResponse(t *testing.T) {
	tests := []struct {
		name, conf string
		in         http.Header
		want       map[string]string // "" means absent
	}{
		{
			name: "remove set add, in that order",
			conf: "[plugin.response]\nremove = [\"server\", \"x-tag\"]\nset = { \"X-Frame-Options\" = \"DENY\", \"cache-control\" = \"no-store\" }\nadd = { \"X-Tag\" = \"b\", \"Set-Cookie\" = \"p=1\" }\n",
			in:   http.Header{"Server": {"nginx"}, "Cache-Control": {"max-age=60"}, "X-Tag": {"a"}, "Set-Cookie": {"o=1"}},
			want: map[string]string{"Server": "", "X-Frame-Options": "DENY", "Cache-Control": "no-store", "X-Tag": "b", "Set-Cookie": "o=1,p=1"},
		},
		{
			name: "inline table",
			conf: "response = { remove = [\"Server\"] }\n",
			in:   http.Header{"Server": {"nginx"}, "Etag": {"x"}},
			want: map[string]string{"Server": "", "Etag": "x"},
		},
		{
			name: "request rules leave responses alone",
			conf: "remove = [\"Server\"]\n[plugin.response]\nset = { \"X-A\" = \"1\" }\n",
			in:   http.Header{"Server": {"nginx"}},
			want: map[string]string{"Server": "nginx", "X-A": "1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := buildAny(t, tt.conf).(plugins.HTTPResponder)
			if !ok {
				t.Fatal("no HTTPResponder hook with response rules")
			}
			resp := &http.Response{StatusCode: 200, Header: tt.in}
			if err := p.OnHTTPResponse(&plugins.Session{}, &http.Request{}, resp); err != nil {
				t.Fatal(err)
			}
			checkHeader(t, "response", resp.Header, tt.want)
		})
	}
}

// Without response rules the instance has no response hook, so ferry
// builds no response view for it.
func TestNoResponseRulesNoHook(t *testing.T) {
	for _, conf := range []string{"set = { \"X-A\" = \"1\" }\n", "[plugin.response]\nremove = []\n"} {
		if _, ok := buildAny(t, conf).(plugins.HTTPResponder); ok {
			t.Errorf("%q: has an HTTPResponder hook", conf)
		}
	}
}
