package match

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func mustCompile(t *testing.T, s Spec) *Rule {
	t.Helper()
	r, err := Compile(s)
	if err != nil {
		t.Fatalf("Compile(%+v): %v", s, err)
	}
	return r
}

func TestRuleEval(t *testing.T) {
	ip := netip.MustParseAddr
	tests := []struct {
		name string
		spec Spec
		q    Query
		want Result
	}{
		{name: "empty rule matches all", spec: Spec{}, q: Query{Host: "example.com", Port: 80}, want: Yes},

		{name: "domain exact", spec: Spec{Domain: []string{"example.com"}}, q: Query{Host: "Example.COM."}, want: Yes},
		{name: "domain exact no sub", spec: Spec{Domain: []string{"example.com"}}, q: Query{Host: "a.example.com"}, want: No},
		{name: "domain wildcard", spec: Spec{Domain: []string{"*.example.com"}}, q: Query{Host: "a.b.example.com"}, want: Yes},
		{name: "domain wildcard not apex", spec: Spec{Domain: []string{"*.example.com"}}, q: Query{Host: "example.com"}, want: No},
		{name: "domain dot apex", spec: Spec{Domain: []string{".example.com"}}, q: Query{Host: "example.com"}, want: Yes},
		{name: "domain list is or", spec: Spec{Domain: []string{"a.example", "b.example"}}, q: Query{Host: "b.example"}, want: Yes},
		{name: "domain never matches literal", spec: Spec{Domain: []string{"*.example.com"}}, q: Query{Host: "10.0.0.1"}, want: No},
		{name: "domain ignores resolved ip", spec: Spec{Domain: []string{"example.com"}}, q: Query{Host: "example.com", IP: ip("10.0.0.1")}, want: Yes},

		{name: "dest literal v4", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{Host: "10.1.2.3"}, want: Yes},
		{name: "dest literal outside", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{Host: "11.1.2.3"}, want: No},
		{name: "dest literal v6", spec: Spec{Dest: []string{"fd00::/8"}}, q: Query{Host: "fd00::1"}, want: Yes},
		{name: "dest mapped literal", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{Host: "::ffff:10.0.0.1"}, want: Yes},
		{name: "dest name unresolved", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{Host: "intranet.example"}, want: NeedIP},
		{name: "dest name resolved in", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{Host: "intranet.example", IP: ip("10.0.0.5")}, want: Yes},
		{name: "dest name resolved out", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{Host: "intranet.example", IP: ip("192.0.2.1")}, want: No},
		{name: "dest ip only", spec: Spec{Dest: []string{"10.0.0.0/8"}}, q: Query{IP: ip("10.0.0.5")}, want: Yes},

		{name: "port single", spec: Spec{Port: []string{"443"}}, q: Query{Host: "x", Port: 443}, want: Yes},
		{name: "port range", spec: Spec{Port: []string{"80", "8000-8999"}}, q: Query{Host: "x", Port: 8080}, want: Yes},
		{name: "port outside", spec: Spec{Port: []string{"80", "8000-8999"}}, q: Query{Host: "x", Port: 9000}, want: No},

		{name: "client in", spec: Spec{Client: []string{"192.168.0.0/16"}}, q: Query{Client: ip("192.168.3.4")}, want: Yes},
		{name: "client mapped", spec: Spec{Client: []string{"192.168.0.0/16"}}, q: Query{Client: ip("::ffff:192.168.3.4")}, want: Yes},
		{name: "client out", spec: Spec{Client: []string{"192.168.0.0/16"}}, q: Query{Client: ip("10.0.0.1")}, want: No},
		{name: "client unknown", spec: Spec{Client: []string{"0.0.0.0/0"}}, q: Query{}, want: No},

		{name: "user in", spec: Spec{User: []string{"alice", "bob"}}, q: Query{User: "bob"}, want: Yes},
		{name: "user exact case", spec: Spec{User: []string{"alice"}}, q: Query{User: "Alice"}, want: No},
		{name: "user none", spec: Spec{User: []string{"alice"}}, q: Query{}, want: No},
		{name: "listener in", spec: Spec{Listener: []string{"office"}}, q: Query{Listener: "office"}, want: Yes},
		{name: "listener out", spec: Spec{Listener: []string{"office"}}, q: Query{Listener: "public"}, want: No},

		{name: "and all hold", spec: Spec{Domain: []string{"*.corp.example"}, Port: []string{"443"}, User: []string{"alice"}},
			q: Query{Host: "git.corp.example", Port: 443, User: "alice"}, want: Yes},
		{name: "and one fails", spec: Spec{Domain: []string{"*.corp.example"}, Port: []string{"443"}, User: []string{"alice"}},
			q: Query{Host: "git.corp.example", Port: 80, User: "alice"}, want: No},
		{name: "other conditions decide before ip", spec: Spec{Dest: []string{"10.0.0.0/8"}, Port: []string{"22"}},
			q: Query{Host: "intranet.example", Port: 443}, want: No},
		{name: "domain and dest both needed", spec: Spec{Domain: []string{"*.corp.example"}, Dest: []string{"10.0.0.0/8"}},
			q: Query{Host: "www.example", IP: ip("10.0.0.1")}, want: No},
		{name: "domain and dest pending", spec: Spec{Domain: []string{"*.corp.example"}, Dest: []string{"10.0.0.0/8"}},
			q: Query{Host: "git.corp.example"}, want: NeedIP},
		{name: "domain and dest resolved", spec: Spec{Domain: []string{"*.corp.example"}, Dest: []string{"10.0.0.0/8"}},
			q: Query{Host: "git.corp.example", IP: ip("10.2.0.1")}, want: Yes},

		{name: "target name", spec: Spec{Target: []string{"*.corp.example", "10.0.0.0/8"}}, q: Query{Host: "a.corp.example"}, want: Yes},
		{name: "target literal", spec: Spec{Target: []string{"*.corp.example", "10.0.0.0/8"}}, q: Query{Host: "10.9.9.9"}, want: Yes},
		{name: "target name pending", spec: Spec{Target: []string{"*.corp.example", "10.0.0.0/8"}}, q: Query{Host: "www.example"}, want: NeedIP},
		{name: "target name resolved out", spec: Spec{Target: []string{"*.corp.example", "10.0.0.0/8"}}, q: Query{Host: "www.example", IP: ip("192.0.2.1")}, want: No},
		{name: "target names only", spec: Spec{Target: []string{"corp.example"}}, q: Query{Host: "www.example"}, want: No},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := mustCompile(t, tt.spec)
			if got := r.Eval(tt.q); got != tt.want {
				t.Errorf("Eval(%+v) = %v, want %v", tt.q, got, tt.want)
			}
			if got := r.Match(tt.q); got != (tt.want == Yes) {
				t.Errorf("Match(%+v) = %v, want %v", tt.q, got, tt.want == Yes)
			}
			wantNeeds := len(tt.spec.Dest) > 0 || strings.Contains(strings.Join(tt.spec.Target, " "), "/")
			if got := r.NeedsIP(); got != wantNeeds {
				t.Errorf("NeedsIP() = %v, want %v", got, wantNeeds)
			}
		})
	}
}

func TestCompileErrors(t *testing.T) {
	missing := t.TempDir() + "/missing.txt"
	_, err := Compile(Spec{
		Client:     []string{"10.0.0.0/8", "10.1.2.3/8"},
		Domain:     []string{"ok.example", "bad..example"},
		DomainFile: []string{missing},
		Dest:       []string{"nope"},
		Port:       []string{"443", "0", "9-1"},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`client[1]: invalid CIDR "10.1.2.3/8"`,
		`domain[1]: invalid domain "bad..example"`,
		`domain_file[0]: open ` + missing,
		`dest[0]: invalid CIDR "nope"`,
		`port[1]: invalid port "0"`,
		`port[2]: invalid port range "9-1"`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	var ee *EntryError
	if !errors.As(err, &ee) || ee.Key != "client" || ee.Index != 1 {
		t.Errorf("first EntryError = %+v, want client[1]", ee)
	}

	if _, err := Compile(Spec{Target: []string{"a.example", "bad target"}}); err == nil || !strings.Contains(err.Error(), `target[1]: invalid destination "bad target"`) {
		t.Errorf("target error = %v", err)
	}
	if _, err := Compile(Spec{Target: []string{"a.example"}, Dest: []string{"10.0.0.0/8"}}); err == nil {
		t.Error("target with dest: no error")
	}
}

func TestCompileDomainFile(t *testing.T) {
	path := t.TempDir() + "/list.txt"
	writeFile(t, path, "0.0.0.0 ads.example\n*.track.example\n")
	r := mustCompile(t, Spec{Domain: []string{"extra.example"}, DomainFile: []string{path}})
	for host, want := range map[string]bool{"ads.example": true, "a.track.example": true, "extra.example": true, "other.example": false} {
		if got := r.Match(Query{Host: host}); got != want {
			t.Errorf("Match(%s) = %v, want %v", host, got, want)
		}
	}
	empty := t.TempDir() + "/empty.txt"
	writeFile(t, empty, "# nothing\n")
	if r := mustCompile(t, Spec{DomainFile: []string{empty}}); r.Match(Query{Host: "any.example"}) {
		t.Error("a rule with an empty domain file matched, want it to match nothing")
	}
}
