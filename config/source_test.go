package config

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestRouteSourceValid(t *testing.T) {
	tests := []struct {
		name         string
		src          string
		want         []netip.Addr
		wantStrategy string
	}{
		{name: "one address", src: `source_address = "127.0.0.2"`, want: addrs("127.0.0.2")},
		{name: "array gets sticky", src: `source_address = ["127.0.0.2", "127.0.0.3"]`,
			want: addrs("127.0.0.2", "127.0.0.3"), wantStrategy: SourceSticky},
		{name: "round-robin", src: "source_address = [\"127.0.0.2\"]\nsource_strategy = \"round-robin\"",
			want: addrs("127.0.0.2"), wantStrategy: SourceRoundRobin},
		{name: "IPv6 loopback", src: `source_address = ["::1"]`, want: addrs("::1"), wantStrategy: SourceSticky},
		{name: "IPv4-mapped is IPv4", src: `source_address = "::ffff:127.0.0.9"`, want: addrs("127.0.0.9")},
		{name: "unset", src: ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseOK(t, l0+"[[route]]\nupstream = \"direct\"\n"+tt.src+"\n")
			r := c.Routes[0]
			if !reflect.DeepEqual(r.Sources, tt.want) {
				t.Fatalf("Sources: got %v, want %v", r.Sources, tt.want)
			}
			if r.SourceStrategy != tt.wantStrategy {
				t.Fatalf("SourceStrategy: got %q, want %q", r.SourceStrategy, tt.wantStrategy)
			}
		})
	}
}

func TestRouteSourceErrors(t *testing.T) {
	const r0 = "[[route]]\nupstream = \"direct\"\n" // source keys start on line 5
	tests := []struct {
		name string
		src  string
		want string
	}{
		{name: "unassigned", src: r0 + `source_address = "192.0.2.1"`,
			want: `test.toml:5:1: route[0].source_address: 192.0.2.1 is not assigned to this host (only its interfaces' addresses, 127.0.0.0/8 and ::1 can be bound)`},
		{name: "unassigned in array", src: r0 + `source_address = ["127.0.0.2", "192.0.2.1"]`,
			want: `test.toml:5:32: route[0].source_address[1]: 192.0.2.1 is not assigned to this host (only its interfaces' addresses, 127.0.0.0/8 and ::1 can be bound)`},
		{name: "not an address", src: r0 + `source_address = ["127.0.0.2", "eth0"]`,
			want: `test.toml:5:32: route[0].source_address[1]: invalid address "eth0": want an IP address, like "192.0.2.10" or "2001:db8::10"`},
		{name: "unspecified", src: r0 + `source_address = "0.0.0.0"`,
			want: `test.toml:5:1: route[0].source_address: 0.0.0.0 is unspecified: name one address of this host`},
		{name: "multicast", src: r0 + `source_address = "ff02::1"`,
			want: `test.toml:5:1: route[0].source_address: ff02::1 is a multicast address: name one address of this host`},
		{name: "zone", src: r0 + `source_address = "fe80::1%lo"`,
			want: `test.toml:5:1: route[0].source_address: fe80::1%lo: zones are not allowed`},
		{name: "not a string", src: r0 + `source_address = [5]`,
			want: `test.toml:5:19: route[0].source_address[0]: must be a string, like "192.0.2.10", not an integer`},
		{name: "a table", src: r0 + `source_address = { a = 1 }`,
			want: `test.toml:5:1: route[0].source_address: must be an address or an array of addresses, not a table`},
		{name: "empty array", src: r0 + `source_address = []`,
			want: `test.toml:5:1: route[0].source_address: empty: list addresses, or leave source_address out to let the kernel pick`},
		{name: "listed twice", src: r0 + `source_address = ["127.0.0.2", "127.0.0.2"]`,
			want: `test.toml:5:32: route[0].source_address[1]: 127.0.0.2 is listed twice (also route[0].source_address[0])`},
		{name: "mixed families", src: r0 + `source_address = ["127.0.0.2", "::1"]`,
			want: `test.toml:5:32: route[0].source_address[1]: ::1 mixes IPv6 and IPv4 in one array: a dial leaves from one family and could not reach targets of the other; split the addresses into routes by match`},
		{name: "strategy without array", src: r0 + "source_address = \"127.0.0.2\"\nsource_strategy = \"random\"",
			want: `test.toml:6:1: route[0].source_strategy: only an array of source_address has a strategy`},
		{name: "strategy alone", src: r0 + `source_strategy = "sticky"`,
			want: `test.toml:5:1: route[0].source_strategy: only an array of source_address has a strategy`},
		{name: "unknown strategy", src: r0 + "source_address = [\"127.0.0.2\"]\nsource_strategy = \"hash\"",
			want: `test.toml:6:1: route[0].source_strategy: unknown value "hash": want "sticky", "random" or "round-robin"`},
		{name: "with reject", src: "[[route]]\nreject = true\nsource_address = \"127.0.0.2\"",
			want: `test.toml:5:1: route[0].source_address: a rejected request is not dialed: remove source_address or reject`},
		{name: "too many", src: r0 + "source_address = [" + strings.Repeat(`"127.0.0.2",`, MaxSourceAddresses+1) + "]",
			want: `test.toml:5:1: route[0].source_address: 257 addresses: at most 256`},
		{name: "every problem at once", src: r0 + "source_address = [\"192.0.2.1\", \"x\"]\n[[route]]\nupstream = \"direct\"\nsource_strategy = \"random\"",
			want: "test.toml:5:19: route[0].source_address[0]: 192.0.2.1 is not assigned to this host (only its interfaces' addresses, 127.0.0.0/8 and ::1 can be bound)\n" +
				"test.toml:5:32: route[0].source_address[1]: invalid address \"x\": want an IP address, like \"192.0.2.10\" or \"2001:db8::10\"\n" +
				"test.toml:6:3: route[1]: unreachable: route[0] before it matches every request\n" +
				"test.toml:8:1: route[1].source_strategy: only an array of source_address has a strategy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("test.toml", []byte(l0+tt.src+"\n"))
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("Parse: got error %v, want *Error", err)
			}
			if got := err.Error(); got != tt.want {
				t.Fatalf("Parse: got error\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}
