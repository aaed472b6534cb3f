package match

import (
	"strings"
	"testing"
)

func TestParseDomain(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Domain
		wantErr string
	}{
		{name: "exact", in: "example.com", want: Domain{"example.com", Exact}},
		{name: "case and trailing dot", in: "WWW.Example.COM.", want: Domain{"www.example.com", Exact}},
		{name: "wildcard", in: "*.example.com", want: Domain{"example.com", Subdomains}},
		{name: "leading dot", in: ".example.com", want: Domain{"example.com", DomainAndSubdomains}},
		{name: "single label", in: "localhost", want: Domain{"localhost", Exact}},
		{name: "underscore and hyphen", in: "_dmarc.my-host.example", want: Domain{"_dmarc.my-host.example", Exact}},
		{name: "punycode", in: "xn--bcher-kva.example", want: Domain{"xn--bcher-kva.example", Exact}},
		{name: "empty", in: "", wantErr: "empty name"},
		{name: "bare wildcard", in: "*.", wantErr: "empty name"},
		{name: "empty label", in: "a..example", wantErr: "empty label"},
		{name: "leading dot twice", in: "..example", wantErr: "empty label"},
		{name: "inner wildcard", in: "a.*.example", wantErr: "wildcard"},
		{name: "star alone", in: "*", wantErr: "wildcard"},
		{name: "port", in: "example.com:443", wantErr: `character ':'`},
		{name: "space", in: "a b", wantErr: `character ' '`},
		{name: "ipv4", in: "10.0.0.1", wantErr: "IP address"},
		{name: "ipv6", in: "::1", wantErr: "IP address"},
		{name: "non-ascii", in: "bücher.example", wantErr: "xn--"},
		{name: "long label", in: strings.Repeat("a", 64) + ".example", wantErr: "label longer than 63"},
		{name: "long name", in: strings.Repeat("abcdefghi.", 26), wantErr: "longer than 253"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDomain(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDomain(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if !strings.Contains(err.Error(), `"`+tt.in+`"`) {
					t.Errorf("error %q does not quote the entry %q", err, tt.in)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDomain(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseDomain(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
			again, err := ParseDomain(got.String())
			if err != nil || again != got {
				t.Errorf("round trip of %q through %q: got %+v, %v", tt.in, got.String(), again, err)
			}
		})
	}
}

func TestDomainsMatch(t *testing.T) {
	var s Domains
	for _, p := range []string{"example.com", "*.wild.example", ".dot.example", "Mixed.Case.Example", "both.example", "*.both.example"} {
		d, err := ParseDomain(p)
		if err != nil {
			t.Fatal(err)
		}
		s.Add(d)
	}
	tests := []struct {
		host string
		want bool
	}{
		{"example.com", true},
		{"EXAMPLE.com.", true},
		{"www.example.com", false}, // exact only
		{"com", false},
		{"notexample.com", false},
		{"wild.example", false}, // *. excludes the domain itself
		{"a.wild.example", true},
		{"a.b.wild.example", true},
		{"A.WILD.EXAMPLE.", true},
		{"xwild.example", false},
		{"dot.example", true}, // . includes it
		{"a.dot.example", true},
		{"a.b.dot.example", true},
		{"xdot.example", false},
		{"mixed.case.example", true},
		{"both.example", true},
		{"x.both.example", true},
		{"", false},
		{".", false},
		{"10.0.0.1", false},
		{"example.com.evil", false},
	}
	for _, tt := range tests {
		if got := s.Match(tt.host); got != tt.want {
			t.Errorf("Match(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	var empty *Domains
	if empty.Match("example.com") || empty.Len() != 0 {
		t.Errorf("nil set matched or has entries")
	}
}

func TestDomainsLoad(t *testing.T) {
	const list = `# a block list
ads.example
*.track.example    # trailing comment
.cdn.example

	UPPER.example.
0.0.0.0 hosts-a.example hosts-b.example # hosts-file line
127.0.0.1	localhost.localdomain
::1 ip6.example
0.0.0.0 0.0.0.0
`
	var s Domains
	n, err := s.Load(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	if n != 8 {
		t.Errorf("loaded %d entries, want 8", n)
	}
	for _, host := range []string{"ads.example", "x.track.example", "cdn.example", "a.cdn.example",
		"upper.example", "hosts-a.example", "hosts-b.example", "localhost.localdomain", "ip6.example"} {
		if !s.Match(host) {
			t.Errorf("%q not matched", host)
		}
	}
	for _, host := range []string{"x.ads.example", "track.example", "x.hosts-a.example", "0.0.0.0", "example"} {
		if s.Match(host) {
			t.Errorf("%q matched, want no match", host)
		}
	}
}

func TestDomainsLoadErrors(t *testing.T) {
	tests := []struct {
		name, list, want string
	}{
		{"bad name", "ok.example\nbad..example\n", `2: invalid domain "bad..example": empty label`},
		{"two names", "a.example b.example\n", `1: want one domain per line, or an address followed by names as in a hosts file, not "a.example b.example"`},
		{"bad hosts name", "# x\n\n0.0.0.0 good.example b@d.example\n", `3: invalid domain "b@d.example"`},
		{"adblock syntax", "||ads.example^\n", `1: invalid domain "||ads.example^"`},
		{"ip line", "10.0.0.1\n", `1: invalid domain "10.0.0.1": an IP address`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s Domains
			_, err := s.Load(strings.NewReader(tt.list))
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("got error %v, want one starting %q", err, tt.want)
			}
		})
	}
}

func TestDomainsLoadFileError(t *testing.T) {
	path := t.TempDir() + "/list.txt"
	writeFile(t, path, "a.example\n*.b.example\nc d e\n")
	var s Domains
	_, err := s.LoadFile(path)
	if err == nil || !strings.HasPrefix(err.Error(), path+":3: ") {
		t.Fatalf("got error %v, want one starting %q", err, path+":3: ")
	}
	if _, err := s.LoadFile(path + ".missing"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: got %v", err)
	}
}

func FuzzDomains(f *testing.F) {
	for _, seed := range []string{"example.com", "*.example.com", ".example.com", "a.b.c", "x", "A.B.", "0.0.0.0 a.example"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var s Domains
		if _, err := s.Load(strings.NewReader(line)); err != nil {
			return
		}
		// Whatever loaded must match what it names.
		d, err := ParseDomain(strings.TrimSpace(line))
		if err != nil {
			return
		}
		switch d.Kind {
		case Exact, DomainAndSubdomains:
			if !s.Match(d.Name) {
				t.Fatalf("%q loaded but %q not matched", line, d.Name)
			}
		}
		if d.Kind != Exact && !s.Match("sub."+d.Name) {
			t.Fatalf("%q loaded but sub.%s not matched", line, d.Name)
		}
		if d.Kind == Subdomains && s.Match(d.Name) {
			t.Fatalf("%q matched its own domain %q", line, d.Name)
		}
	})
}
