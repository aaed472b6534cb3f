package config

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCIDR(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr string
	}{
		{name: "v4 prefix", in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{name: "v6 prefix", in: "::1/128", want: "::1/128"},
		{name: "v6 network", in: "fd00::/8", want: "fd00::/8"},
		{name: "bare v4", in: "192.0.2.7", want: "192.0.2.7/32"},
		{name: "bare v6", in: "2001:db8::1", want: "2001:db8::1/128"},
		{name: "host bits set", in: "10.0.0.1/8", wantErr: "did you mean 10.0.0.0/8?"},
		{name: "bad prefix length", in: "10.0.0.0/33", wantErr: `invalid CIDR "10.0.0.0/33"`},
		{name: "not an address", in: "localhost", wantErr: `invalid CIDR "localhost"`},
		{name: "zone", in: "fe80::1%eth0", wantErr: "zones are not allowed"},
		{name: "empty", in: "", wantErr: "invalid CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c CIDR
			err := c.UnmarshalText([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("UnmarshalText(%q): got error %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || c.String() != tt.want {
				t.Fatalf("UnmarshalText(%q): got %v, %v, want %s", tt.in, c, err, tt.want)
			}
			if c.Prefix() != netip.MustParsePrefix(tt.want) {
				t.Fatalf("Prefix(): got %v, want %s", c.Prefix(), tt.want)
			}
			b, err := c.MarshalText()
			if err != nil || string(b) != tt.want {
				t.Fatalf("MarshalText(): got %q, %v, want %q", b, err, tt.want)
			}
		})
	}
	if _, err := (CIDR{}).MarshalText(); err == nil {
		t.Fatalf("MarshalText of the zero CIDR: got no error, want one")
	}
}
