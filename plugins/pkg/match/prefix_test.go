package match

import (
	"net/netip"
	"os"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		name, in, want, wantErr string
	}{
		{name: "v4 cidr", in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{name: "v4 address", in: "192.0.2.1", want: "192.0.2.1/32"},
		{name: "v6 cidr", in: "fd00::/8", want: "fd00::/8"},
		{name: "v6 address", in: "::1", want: "::1/128"},
		{name: "mapped cidr", in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{name: "mapped address", in: "::ffff:127.0.0.1", want: "127.0.0.1/32"},
		{name: "host bits", in: "10.1.2.3/8", wantErr: "did you mean 10.0.0.0/8"},
		{name: "zone", in: "fe80::1%eth0", wantErr: "zones"},
		{name: "garbage", in: "ten/8", wantErr: "invalid CIDR"},
		{name: "name", in: "example.com", wantErr: "invalid CIDR"},
		{name: "too long", in: "10.0.0.0/33", wantErr: "invalid CIDR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePrefix(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Fatalf("ParsePrefix(%q) error = %v, want one naming the entry and containing %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("ParsePrefix(%q) = %v, %v, want %s", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestPrefixesContains(t *testing.T) {
	var ps []netip.Prefix
	for _, s := range []string{"10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24", "192.168.2.0/24", "203.0.113.7",
		"255.255.255.255", "2001:db8::/32", "fd00::/8", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124"} {
		p, err := ParsePrefix(s)
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	set := NewPrefixes(ps...)
	tests := []struct {
		addr string
		want bool
	}{
		{"10.0.0.0", true},
		{"10.255.255.255", true},
		{"10.1.2.3", true},
		{"11.0.0.0", false},
		{"9.255.255.255", false},
		{"192.168.1.1", true},
		{"192.168.2.255", true},
		{"192.168.3.0", false},
		{"192.168.0.255", false},
		{"203.0.113.7", true},
		{"203.0.113.8", false},
		{"255.255.255.255", true},
		{"0.0.0.0", false},
		{"::ffff:10.9.9.9", true}, // mapped matches its IPv4 prefix
		{"::ffff:11.9.9.9", false},
		{"2001:db8::1", true},
		{"2001:db9::1", false},
		{"fd12:3456::1", true},
		{"fe00::1", false},
		{"::1", true},
		{"::2", false},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true},
		{"fe80::1%eth0", false},
	}
	for _, tt := range tests {
		a := netip.MustParseAddr(tt.addr)
		if got := set.Contains(a); got != tt.want {
			t.Errorf("Contains(%s) = %v, want %v", tt.addr, got, tt.want)
		}
		// The slow way agrees.
		slow := false
		for _, p := range ps {
			slow = slow || p.Contains(a.Unmap())
		}
		if slow != tt.want {
			t.Errorf("test table wrong for %s: netip says %v", tt.addr, slow)
		}
	}
	var none *Prefixes
	if none.Contains(netip.MustParseAddr("10.0.0.1")) {
		t.Error("nil set contains an address")
	}
	if set.Contains(netip.Addr{}) {
		t.Error("set contains the zero Addr")
	}
	all := NewPrefixes(netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0"))
	for _, a := range []string{"0.0.0.0", "255.255.255.255", "::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "1.2.3.4"} {
		if !all.Contains(netip.MustParseAddr(a)) {
			t.Errorf("/0 set does not contain %s", a)
		}
	}
	if v6only := NewPrefixes(netip.MustParsePrefix("::/0")); v6only.Contains(netip.MustParseAddr("1.2.3.4")) {
		t.Error("::/0 contains an IPv4 address, want it not to (as netip)")
	}
}

// TestPrefixesAgainstNetip compares the merged ranges with netip on many
// overlapping prefixes.
func TestPrefixesAgainstNetip(t *testing.T) {
	rnd := newRand(1)
	var ps []netip.Prefix
	for range 500 {
		var b [4]byte
		rnd.fill(b[:])
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom4(b), 4+rnd.intn(29)).Masked())
		var b6 [16]byte
		rnd.fill(b6[:])
		b6[0] = 0x20
		ps = append(ps, netip.PrefixFrom(netip.AddrFrom16(b6), 8+rnd.intn(121)).Masked())
	}
	set := NewPrefixes(ps...)
	check := func(a netip.Addr) {
		want := false
		for _, p := range ps {
			if p.Contains(a) {
				want = true
				break
			}
		}
		if got := set.Contains(a); got != want {
			t.Fatalf("Contains(%s) = %v, want %v", a, got, want)
		}
	}
	for _, p := range ps {
		check(p.Addr())
		check(lastAddr(p))
		if n := lastAddr(p).Next(); n.IsValid() {
			check(n)
		}
		if n := p.Addr().Prev(); n.IsValid() {
			check(n)
		}
	}
	for range 20000 {
		var b [4]byte
		rnd.fill(b[:])
		check(netip.AddrFrom4(b))
		var b6 [16]byte
		rnd.fill(b6[:])
		b6[0] = 0x20
		check(netip.AddrFrom16(b6))
	}
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// rnd is a small deterministic generator, so tests repeat.
type rnd struct{ s uint64 }

func newRand(seed uint64) *rnd { return &rnd{seed*0x9E3779B97F4A7C15 + 1} }

func (r *rnd) next() uint64 {
	r.s ^= r.s << 13
	r.s ^= r.s >> 7
	r.s ^= r.s << 17
	return r.s
}

func (r *rnd) intn(n int) int { return int(r.next() % uint64(n)) }

func (r *rnd) fill(b []byte) {
	for i := range b {
		b[i] = byte(r.next())
	}
}

func TestPortRange(t *testing.T) {
	tests := []struct {
		in      string
		want    PortRange
		wantErr string
	}{
		{in: "443", want: PortRange{443, 443}},
		{in: "8000-8999", want: PortRange{8000, 8999}},
		{in: "1-65535", want: PortRange{1, 65535}},
		{in: "0", wantErr: "invalid port"},
		{in: "65536", wantErr: "invalid port"},
		{in: "http", wantErr: "invalid port"},
		{in: "80-", wantErr: "invalid port"},
		{in: "-80", wantErr: "invalid port"},
		{in: "9000-8000", wantErr: "9000 is above 8000"},
		{in: "", wantErr: "invalid port"},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), `"`+tt.in+`"`) {
				t.Errorf("ParsePortRange(%q) error = %v, want one naming the entry and containing %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v, want %v", tt.in, got, err, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
	ps := Ports{{80, 80}, {8000, 8999}}
	for port, want := range map[uint16]bool{80: true, 81: false, 7999: false, 8000: true, 8999: true, 9000: false} {
		if got := ps.Contains(port); got != want {
			t.Errorf("Contains(%d) = %v, want %v", port, got, want)
		}
	}
}
