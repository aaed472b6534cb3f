package config

import (
	"errors"
	"testing"
)

// TestBindAndPACErrors checks the socks5_bind and pac settings: each
// problem at its key, all at once.
func TestBindAndPACErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want string
	}{
		{name: "bind without socks5", src: l0 + "protocols = [\"http\"]\nsocks5_bind = true\n",
			want: `test.toml:4:1: listener[0].socks5_bind: BIND is a SOCKS5 command: add "socks5" to protocols`},
		{name: "bind settings without bind", src: l0 + "socks5_bind_ports = \"40000-40010\"\nsocks5_bind_timeout = \"1s\"\n",
			want: "test.toml:3:1: listener[0].socks5_bind_ports: set socks5_bind = true, or leave this out\n" +
				"test.toml:4:1: listener[0].socks5_bind_timeout: set socks5_bind = true, or leave this out"},
		{name: "bind zero timeout", src: l0 + "socks5_bind = true\nsocks5_bind_timeout = \"0s\"\n",
			want: "test.toml:4:1: listener[0].socks5_bind_timeout: must be greater than 0"},
		{name: "bind bad port range", src: l0 + "socks5_bind = true\nsocks5_bind_ports = \"50-40\"\n",
			want: `test.toml:4:21: listener[0].socks5_bind_ports: invalid port range "50-40": 50 is above 40`},
		{name: "pac without http", src: l0 + "protocols = [\"socks5\"]\n[listener.pac]\n",
			want: `test.toml:4:2: listener[0].pac: a PAC file is served over HTTP: add "http" to protocols`},
		{name: "pac hostile values", src: l0 + "[listener.pac]\n" +
			"direct = [\"ok.example\", \"\\\"); alert(1); (\\\"\", \"a b\", \"\"]\n" +
			"proxies = [\"PROXY p:3128\", \"PROXY p:3128\\\"; DIRECT\", \"DIRECT\", \"FTP p:21\", \"PROXY [fe80::1%x\\\"]:1\", \"HTTPS p\"]\n",
			want: `test.toml:4:25: listener[0].pac.direct[1]: invalid host pattern "\"); alert(1); (\"": only letters, digits, '-', '_', '.', '*' and '?' are allowed` + "\n" +
				`test.toml:4:47: listener[0].pac.direct[2]: invalid host pattern "a b": only letters, digits, '-', '_', '.', '*' and '?' are allowed` + "\n" +
				`test.toml:4:54: listener[0].pac.direct[3]: invalid host pattern "": want a name like "intranet", "*.internal" or ".example.com"` + "\n" +
				`test.toml:5:28: listener[0].pac.proxies[1]: invalid proxy "PROXY p:3128\"; DIRECT": invalid address "p:3128\"; DIRECT": port "3128\"; DIRECT" is not a number` + "\n" +
				`test.toml:5:54: listener[0].pac.proxies[2]: DIRECT is not a proxy: set fallback_direct = true to end the list with it` + "\n" +
				`test.toml:5:64: listener[0].pac.proxies[3]: invalid proxy "FTP p:21": want KIND host:port with KIND "PROXY", "HTTPS", "SOCKS5" or "SOCKS"` + "\n" +
				`test.toml:5:76: listener[0].pac.proxies[4]: invalid proxy "PROXY [fe80::1%x\"]:1": zones are not allowed` + "\n" +
				`test.toml:5:101: listener[0].pac.proxies[5]: invalid proxy "HTTPS p": invalid address "p": want host:port, like "127.0.0.1:8080" or "[::1]:8080"`},
		{name: "pac unknown key", src: l0 + "[listener.pac]\ndirekt = [\"a\"]\n",
			want: "test.toml:4:1: listener[0].pac.direkt: unknown key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(tt.src))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: got %v, want *Error", err)
			}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Parse: got error\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

// TestBindAndPACValid loads a listener with every new setting.
func TestBindAndPACValid(t *testing.T) {
	src := l0 + "socks5_bind = true\nsocks5_bind_ports = \"40000-40010\"\nsocks5_bind_timeout = \"30s\"\n" +
		"[listener.pac]\ndirect = [\"localhost\", \"*.internal\", \".corp.example\"]\n" +
		"direct_networks = [\"10.0.0.0/8\", \"fd00::/8\"]\nproxies = [\"HTTPS proxy.example:443\", \"proxy proxy.example:3128\"]\nfallback_direct = true\n"
	cfg, err := Parse("test.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	ln := cfg.Listeners[0]
	if !ln.Socks5Bind || ln.Socks5BindPorts.Lo != 40000 || ln.BindTimeout().String() != "30s" {
		t.Errorf("bind settings %v %v %v", ln.Socks5Bind, ln.Socks5BindPorts, ln.BindTimeout())
	}
	if ln.PAC == nil || len(ln.PAC.Direct) != 3 || len(ln.PAC.DirectNetworks) != 2 || !ln.PAC.FallbackDirect {
		t.Errorf("pac %+v", ln.PAC)
	}
	if def := (&Listener{}).BindTimeout(); def != DefaultSocks5BindTimeout {
		t.Errorf("default bind timeout %v, want %v", def, DefaultSocks5BindTimeout)
	}
}
