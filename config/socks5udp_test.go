package config

import (
	"strings"
	"testing"
)

func TestSOCKS5UDPSettings(t *testing.T) {
	const ln = "[[listener]]\nlisten = \"127.0.0.1:1080\"\n"
	for _, tt := range []struct {
		name, src     string
		wantUDP       bool
		wantAdvertise string
		wantErr       string
	}{
		{name: "default on", src: ln, wantUDP: true},
		{name: "off", src: ln + "socks5_udp = false\n"},
		{name: "advertise", src: ln + "socks5_udp_advertise = \"203.0.113.7\"\n", wantUDP: true, wantAdvertise: "203.0.113.7"},
		{name: "advertise IPv6", src: ln + "socks5_udp_advertise = \"2001:db8::7\"\n", wantUDP: true, wantAdvertise: "2001:db8::7"},
		{name: "no socks5", src: ln + "protocols = [\"http\"]\n", wantUDP: false},
		{name: "not an address", src: ln + "socks5_udp_advertise = \"relay.example\"\n",
			wantErr: "test.toml:3:24: listener[0].socks5_udp_advertise: not an IP address"},
		{name: "unspecified", src: ln + "socks5_udp_advertise = \"0.0.0.0\"\n",
			wantErr: "listener[0].socks5_udp_advertise: \"0.0.0.0\": want the address clients reach"},
		{name: "set without socks5", src: ln + "protocols = [\"http\"]\nsocks5_udp = true\n",
			wantErr: "test.toml:4:1: listener[0].socks5_udp: only a listener with \"socks5\""},
		{name: "advertise while off", src: ln + "socks5_udp = false\nsocks5_udp_advertise = \"203.0.113.7\"\n",
			wantErr: "listener[0].socks5_udp_advertise: the listener does not serve SOCKS5 UDP ASSOCIATE"},
		{name: "not a bool", src: ln + "socks5_udp = \"yes\"\n", wantErr: "test.toml:3:14: listener[0].socks5_udp"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("test.toml", []byte(tt.src))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want none", err)
			}
			l := c.Listeners[0]
			adv := ""
			if l.SOCKS5UDPAdvertise.IsValid() {
				adv = l.SOCKS5UDPAdvertise.String()
			}
			if l.UDPEnabled() != tt.wantUDP || adv != tt.wantAdvertise {
				t.Fatalf("got udp %v advertise %q, want %v %q", l.UDPEnabled(), adv, tt.wantUDP, tt.wantAdvertise)
			}
		})
	}
}
