package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestHTTP2Settings(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string // the error; empty: valid
	}{
		{name: "h2c", src: l0 + "h2c = true\nmax_streams_per_connection = 10000\nmax_client_streams = 0\n"},
		{name: "h2c without http", src: l0 + "protocols = [\"socks5\"]\nh2c = true\n", want: `test.toml:4:1: listener[0].h2c: HTTP/2 is an HTTP proxy protocol: h2c needs "http" in protocols`},
		{name: "streams zero", src: l0 + "max_streams_per_connection = 0\n", want: "test.toml:3:1: listener[0].max_streams_per_connection: must be between 1 and 10000, got 0"},
		{name: "streams too many", src: l0 + "max_streams_per_connection = 10001\n", want: "test.toml:3:1: listener[0].max_streams_per_connection: must be between 1 and 10000, got 10001"},
		{name: "http2 without tls", src: l0 + "http2 = true\n", want: "test.toml:3:1: listener[0].http2: http2 is the h2 offer of a TLS listener's ALPN: set tls, or h2c for HTTP/2 over plain TCP"},
		{name: "client streams negative", src: l0 + "max_client_streams = -1\n", want: "test.toml:3:1: listener[0].max_client_streams: must not be negative (0 means unlimited)"},
		{name: "all at once", src: l0 + "protocols = [\"tcp\"]\ntarget = \"a:1\"\nh2c = true\nmax_streams_per_connection = -1\n",
			want: "test.toml:5:1: listener[0].h2c: HTTP/2 is an HTTP proxy protocol: h2c needs \"http\" in protocols\n" +
				"test.toml:6:1: listener[0].max_streams_per_connection: must be between 1 and 10000, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(tt.src))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Parse: got error\n%v\nwant none", err)
			case tt.want != "" && err == nil:
				t.Fatalf("Parse: got no error, want\n%s", tt.want)
			case tt.want != "" && err.Error() != tt.want:
				t.Fatalf("Parse: got error\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}

func TestHTTP2TLSSettings(t *testing.T) {
	dir := t.TempDir()
	writePair(t, dir, "a")
	file := filepath.Join(dir, "ferry.toml")
	head := "[[listener]]\nlisten = \"127.0.0.1:8443\"\ntls = { cert = \"a.pem\", key = \"a-key.pem\" }\n"
	tests := []struct {
		name, keys string
		want       string // the error; empty: valid
	}{
		{name: "default", keys: ""},
		{name: "http2 off", keys: "http2 = false\n"},
		{name: "http2 on", keys: "http2 = true\nmax_streams_per_connection = 5\n"},
		{name: "h2c on tls", keys: "h2c = true\n", want: "ferry.toml:4:1: listener[0].h2c: h2c is HTTP/2 over plain TCP; a TLS listener offers h2 in ALPN (http2, default true)"},
		{name: "http2 without http", keys: "protocols = [\"socks5\"]\nhttp2 = true\n", want: `ferry.toml:5:1: listener[0].http2: HTTP/2 is an HTTP proxy protocol: http2 needs "http" in protocols`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(file, []byte(head+tt.keys), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := Load(file)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Load: got error\n%v\nwant none", err)
			case tt.want != "" && (err == nil || !strings.HasSuffix(err.Error(), tt.want)):
				t.Fatalf("Load: got error\n%v\nwant\n%s", err, tt.want)
			}
		})
	}
}
