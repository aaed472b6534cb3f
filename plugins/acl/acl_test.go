package acl

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
)

// newACL builds an instance from the body of its [[plugin]] table, the
// way ferry does: config.Parse, then the factory decoding strictly.
func newACL(t testing.TB, body string) *ACL {
	t.Helper()
	p, err := tryACL(body, zerolog.Nop())
	if err != nil {
		t.Fatalf("build acl:\n%v\nconfig:\n%s", err, body)
	}
	return p
}

func tryACL(body string, log zerolog.Logger) (*ACL, error) {
	src := "[[listener]]\nlisten = \"127.0.0.1:0\"\nplugins = [\"acl\"]\n\n[[plugin]]\nname = \"acl\"\n" + body
	cfg, err := config.Parse("ferry.toml", []byte(src))
	if err != nil {
		return nil, err
	}
	pc := &cfg.Plugins[0]
	p, err := New(plugins.NewEnv(pc.Name, log, plugins.NewServices(), pc.Decode))
	if err != nil {
		return nil, pc.WrapError(err)
	}
	return p.(*ACL), nil
}

// req is one request as the rules see it.
type req struct {
	target, user, client, listener string
}

func (r req) session() *plugins.Session {
	s := &plugins.Session{ID: "t1", Target: r.target, User: r.user, Listener: r.listener, Protocol: "connect", Log: zerolog.Nop()}
	if s.Listener == "" {
		s.Listener = "main"
	}
	client := r.client
	if client == "" {
		client = "192.0.2.50"
	}
	s.Client = net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.MustParseAddr(client), 40000))
	s.Peer = s.Client
	return s
}

// connect runs OnConnect on s and summarizes its answer: "allow",
// "deny", or "pending" when it let the request through because the
// verdict waits for the address, which OnDial decides.
func connect(t *testing.T, p *ACL, s *plugins.Session) string {
	t.Helper()
	err := p.OnConnect(context.Background(), s)
	if err == nil {
		if q, qerr := p.query(s); qerr == nil && p.decide(q, newHTTPView(httpRequestOf(s))).pending {
			return "pending"
		}
	}
	return outcome(t, err)
}

// outcome summarizes a hook's answer: "allow" or "deny".
func outcome(t *testing.T, err error) string {
	t.Helper()
	if err == nil {
		return "allow"
	}
	if c := plugins.CodeOf(err); c != plugins.CodeForbidden {
		t.Errorf("refusal %v has code %v, want forbidden", err, c)
	}
	return "deny"
}

func TestRules(t *testing.T) {
	const rules = `
default = "allow"

[[plugin.rule]]               # rule[0]
action = "allow"
client = ["10.9.0.0/16"]      # admins go anywhere

[[plugin.rule]]               # rule[1]
action = "deny"
domain = ["*.ads.example", ".tracker.example", "exact.example"]

[[plugin.rule]]               # rule[2]
action = "allow"
user = ["alice"]
dest = ["10.0.0.0/8"]

[[plugin.rule]]               # rule[3]
action = "deny"
dest = ["10.0.0.0/8", "fd00::/8"]

[[plugin.rule]]               # rule[4]
action = "deny"
port = [25, "6000-6063"]

[[plugin.rule]]               # rule[5]
action = "deny"
listener = ["kiosk"]
`
	p := newACL(t, rules)
	tests := []struct {
		name string
		req  req
		// connect is OnConnect's outcome; dial maps addresses to OnDial's.
		connect string
		dial    map[string]string
	}{
		{name: "no rule matches: default", req: req{target: "www.example:443"}, connect: "pending",
			dial: map[string]string{"93.184.216.34": "allow", "10.1.1.1": "deny"}},
		{name: "wildcard subdomain denied", req: req{target: "x.ads.example:443"}, connect: "deny"},
		{name: "wildcard apex not covered", req: req{target: "ads.example:443"}, connect: "pending",
			dial: map[string]string{"192.0.2.1": "allow"}},
		{name: "dot form covers apex", req: req{target: "TRACKER.example.:80"}, connect: "deny"},
		{name: "exact", req: req{target: "exact.example:80"}, connect: "deny"},
		{name: "exact not sub", req: req{target: "a.exact.example:80"}, connect: "pending",
			dial: map[string]string{"192.0.2.1": "allow"}},
		{name: "first match wins: admin before deny", req: req{target: "x.ads.example:443", client: "10.9.1.1"}, connect: "allow",
			dial: map[string]string{"10.1.1.1": "allow"}},
		{name: "ip literal decided at connect", req: req{target: "10.1.2.3:443"}, connect: "deny"},
		{name: "ip literal v6", req: req{target: "[fd00::5]:443"}, connect: "deny"},
		{name: "ip literal mapped", req: req{target: "[::ffff:10.1.2.3]:443"}, connect: "deny"},
		{name: "public literal allowed", req: req{target: "192.0.2.9:443"}, connect: "allow"},
		{name: "alice allowed inside", req: req{target: "intranet.example:443", user: "alice"}, connect: "pending",
			dial: map[string]string{"10.1.1.1": "allow", "fd00::1": "deny", "192.0.2.1": "allow"}},
		{name: "bob refused inside", req: req{target: "intranet.example:443", user: "bob"}, connect: "pending",
			dial: map[string]string{"10.1.1.1": "deny", "::ffff:10.1.1.1": "deny", "192.0.2.1": "allow"}},
		// rule[3] waits for the address, but rule[4] matches for sure and
		// denies too: refused at once.
		{name: "port denied", req: req{target: "mail.example:25"}, connect: "deny"},
		{name: "port range denied literal", req: req{target: "192.0.2.1:6010"}, connect: "deny"},
		{name: "listener denied", req: req{target: "192.0.2.1:443", listener: "kiosk"}, connect: "deny"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.req.session()
			if got := connect(t, p, s); got != tt.connect {
				t.Errorf("OnConnect: got %s, want %s", got, tt.connect)
			}
			for addr, want := range tt.dial {
				_, port, _ := splitTarget(s.Target)
				ap := netip.AddrPortFrom(netip.MustParseAddr(addr), port)
				if got := outcome(t, p.OnDial(s, ap)); got != want {
					t.Errorf("OnDial(%s): got %s, want %s", ap, got, want)
				}
			}
		})
	}
}

// TestTwoPhase checks how OnConnect and OnDial share first-match order.
func TestTwoPhase(t *testing.T) {
	tests := []struct {
		name    string
		config  string
		target  string
		connect string
		dial    map[string]string
	}{
		{
			name: "allow before a name deny: the address decides",
			config: `default = "allow"
rule = [
  { action = "allow", dest = ["10.0.0.0/8"] },
  { action = "deny", domain = ["evil.example"] },
]`,
			target:  "evil.example:80",
			connect: "pending",
			dial:    map[string]string{"10.0.0.1": "allow", "192.0.2.1": "deny"},
		},
		{
			name: "deny on a name decided before a later dest rule",
			config: `default = "allow"
rule = [
  { action = "deny", domain = ["evil.example"] },
  { action = "allow", dest = ["10.0.0.0/8"] },
]`,
			target:  "evil.example:80",
			connect: "deny",
		},
		{
			name: "every possible verdict denies: refused before resolution",
			config: `default = "deny"
rule = [
  { action = "allow", domain = ["good.example"] },
  { action = "deny", dest = ["10.0.0.0/8"] },
]`,
			target:  "unknown.example:80",
			connect: "deny",
		},
		{
			name: "every possible verdict allows: allowed before resolution",
			config: `default = "allow"
rule = [
  { action = "allow", dest = ["10.0.0.0/8"] },
]`,
			target:  "www.example:80",
			connect: "allow",
			dial:    map[string]string{"10.0.0.1": "allow", "192.0.2.1": "allow"},
		},
		{
			name: "a certain later match ends the possibilities",
			config: `default = "allow"
rule = [
  { action = "deny", dest = ["10.0.0.0/8"] },
  { action = "deny", port = [80] },
]`,
			target:  "www.example:80",
			connect: "deny",
		},
		{
			name: "dest condition fails on other conditions first",
			config: `default = "allow"
rule = [
  { action = "deny", dest = ["10.0.0.0/8"], port = [22] },
]`,
			target:  "www.example:443",
			connect: "allow",
			dial:    map[string]string{"10.0.0.1": "allow"},
		},
		{
			name: "domain and dest in one rule: both must hold",
			config: `default = "allow"
rule = [
  { action = "deny", domain = ["*.corp.example"], dest = ["10.0.0.0/8"] },
]`,
			target:  "git.corp.example:443",
			connect: "pending",
			dial:    map[string]string{"10.0.0.1": "deny", "192.0.2.1": "allow"},
		},
		{
			name:    "default deny without rules",
			config:  `default = "deny"`,
			target:  "www.example:443",
			connect: "deny",
		},
		{
			name:    "default allow without rules",
			config:  `default = "allow"`,
			target:  "www.example:443",
			connect: "allow",
			dial:    map[string]string{"10.0.0.1": "allow"},
		},
		{
			name: "rule without conditions matches all",
			config: `default = "allow"
rule = [ { action = "deny" } ]`,
			target:  "www.example:443",
			connect: "deny",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newACL(t, tt.config)
			s := req{target: tt.target}.session()
			if got := connect(t, p, s); got != tt.connect {
				t.Errorf("OnConnect: got %s, want %s", got, tt.connect)
			}
			for addr, want := range tt.dial {
				_, port, _ := splitTarget(s.Target)
				ap := netip.AddrPortFrom(netip.MustParseAddr(addr), port)
				if got := outcome(t, p.OnDial(s, ap)); got != want {
					t.Errorf("OnDial(%s): got %s, want %s", ap, got, want)
				}
			}
		})
	}
}

func TestDenyPrivate(t *testing.T) {
	p := newACL(t, "default = \"allow\"\ndeny_private_destinations = true\n")
	private := []string{
		"127.0.0.1", "127.1.2.3", "::1", "0.0.0.0", "::",
		"10.0.0.1", "172.16.5.4", "192.168.0.1",
		"169.254.169.254", "fe80::1", "fd00:ec2::254", "fc00::1",
		"100.64.0.1", "224.0.0.251", "ff02::1", "255.255.255.255", "240.0.0.1",
		"192.0.0.170", "198.18.0.1", "192.0.2.1", "2001:db8::1",
		"::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::ffff:192.168.1.1",
		"64:ff9b::7f00:1", "2002:a00:1::",
	}
	public := []string{"8.8.8.8", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"}
	for _, a := range private {
		addr := netip.MustParseAddr(a)
		s := req{target: "name.example:80"}.session()
		if got := connect(t, p, s); got != "allow" {
			t.Errorf("OnConnect(name): got %s, want allow (the name is checked at dial)", got)
		}
		if got := outcome(t, p.OnDial(s, netip.AddrPortFrom(addr, 80))); got != "deny" {
			t.Errorf("OnDial(%s): got %s, want deny", a, got)
		}
		// An IP literal target is refused at once.
		lit := req{target: net.JoinHostPort(a, "80")}.session()
		if got := connect(t, p, lit); got != "deny" {
			t.Errorf("OnConnect(%s): got %s, want deny", lit.Target, got)
		}
	}
	for _, a := range public {
		s := req{target: net.JoinHostPort(a, "443")}.session()
		if got := connect(t, p, s); got != "allow" {
			t.Errorf("OnConnect(%s): got %s, want allow", s.Target, got)
		}
		if got := outcome(t, p.OnDial(s, netip.AddrPortFrom(netip.MustParseAddr(a), 443))); got != "allow" {
			t.Errorf("OnDial(%s): got %s, want allow", a, got)
		}
	}
	// Private destinations are refused before any rule, even one allowing
	// them explicitly.
	p = newACL(t, `default = "deny"
deny_private_destinations = true
rule = [ { action = "allow", domain = ["localhost"] } ]
`)
	s := req{target: "localhost:80"}.session()
	if got := connect(t, p, s); got != "allow" {
		t.Errorf("OnConnect(localhost): got %s, want allow", got)
	}
	err := p.OnDial(s, netip.MustParseAddrPort("127.0.0.1:80"))
	if got := outcome(t, err); got != "deny" {
		t.Fatalf("OnDial(127.0.0.1): got %s, want deny", got)
	}
	if want := "acl: denied by deny_private_destinations: 127.0.0.1 is in 127.0.0.0/8, loopback"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// TestLog checks the refusal line: info level, with client, user, target,
// address and rule.
func TestLog(t *testing.T) {
	p := newACL(t, `default = "allow"
rule = [
  { action = "allow", domain = ["ok.example"] },
  { action = "deny", dest = ["10.0.0.0/8"] },
]`)
	var buf bytes.Buffer
	s := req{target: "intranet.example:443", user: "bob"}.session()
	s.Log = zerolog.New(&buf).Level(zerolog.InfoLevel)
	if err := p.OnConnect(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	err := p.OnDial(s, netip.MustParseAddrPort("10.2.3.4:443"))
	if err == nil || err.Error() != "acl: denied by rule[1]" {
		t.Fatalf("OnDial error = %v, want acl: denied by rule[1]", err)
	}
	line := buf.String()
	for _, want := range []string{`"level":"info"`, `"plugin":"acl"`, `"client":"192.0.2.50:40000"`, `"user":"bob"`,
		`"target":"intranet.example:443"`, `"addr":"10.2.3.4"`, `"rule":"rule[1]"`, `"message":"acl denied"`} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %s: %s", want, line)
		}
	}
	if n := strings.Count(line, "\n"); n != 1 {
		t.Errorf("got %d lines at info, want 1 (allowed requests log at debug):\n%s", n, line)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	badList := filepath.Join(dir, "bad.txt")
	if err := os.WriteFile(badList, []byte("ok.example\nnot ok\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, body string
		want       []string
	}{
		{name: "default missing", body: ``,
			want: []string{`ferry.toml:5:3: plugin[0]: default: missing: set default = "allow" or "deny"`}},
		{name: "bad default", body: `default = "permit"`,
			want: []string{`ferry.toml:7:11: plugin[0].default: invalid action "permit": want "allow" or "deny"`}},
		{name: "action missing", body: "default = \"deny\"\n[[plugin.rule]]\nport = [80]\n",
			want: []string{`ferry.toml:8:3: plugin[0].rule[0]: action: missing`}},
		{name: "bad entries", body: `default = "deny"
rule = [
  { action = "deny", port = [80, "8000-", 70000], dest = ["10.1.0.0/8"] },
  { action = "block", client = ["nope"], domain = ["ok.example", "a..b"] },
]`, want: []string{
			`ferry.toml:9:34: plugin[0].rule[0].port[1]: invalid port "8000-"`,
			`ferry.toml:9:43: plugin[0].rule[0].port[2]: invalid port "70000"`,
			`ferry.toml:9:59: plugin[0].rule[0].dest[0]: invalid CIDR "10.1.0.0/8": address has bits set beyond /8 (did you mean 10.0.0.0/8?)`,
			`ferry.toml:10:14: plugin[0].rule[1].action: invalid action "block"`,
			`ferry.toml:10:33: plugin[0].rule[1].client[0]: invalid CIDR "nope"`,
			`ferry.toml:10:66: plugin[0].rule[1].domain[1]: invalid domain "a..b": empty label`,
		}},
		{name: "unknown key", body: "default = \"deny\"\n[[plugin.rule]]\naction = \"deny\"\ndomains = [\"x.example\"]\n",
			want: []string{`ferry.toml:10:1: plugin[0].rule[0].domains: unknown key`}},
		{name: "port as bool", body: "default = \"deny\"\nrule = [ { action = \"deny\", port = [true] } ]\n",
			want: []string{`plugin[0].rule[0].port[0]: invalid port "true"`}},
		{name: "missing domain file", body: "default = \"deny\"\n[[plugin.rule]]\naction = \"deny\"\ndomain_file = \"" + filepath.Join(dir, "missing.txt") + "\"\n",
			want: []string{`ferry.toml:10:1: plugin[0].rule[0].domain_file: open ` + filepath.Join(dir, "missing.txt") + `: no such file`}},
		{name: "bad domain file line", body: "default = \"deny\"\n[[plugin.rule]]\naction = \"deny\"\ndomain_file = \"" + badList + "\"\n",
			want: []string{`plugin[0].rule[0].domain_file: ` + badList + `:2: want one domain per line`}},
		{name: "bad HTTP entries", body: `default = "allow"
rule = [
  { action = "deny", method = ["GET", "PO ST"], scheme = ["ftp"], header = ["X Y"] },
  { action = "deny", path = ["admin/", "//a"], path_regexp = ["(", "^/ok"] },
]`, want: []string{
			`plugin[0].rule[0].method[1]: "PO ST" is not a valid method`,
			`plugin[0].rule[0].scheme[0]: invalid scheme "ftp"`,
			`plugin[0].rule[0].header[0]: "X Y" is not a valid header name`,
			`plugin[0].rule[1].path[0]: invalid path prefix "admin/": must start with "/"`,
			`plugin[0].rule[1].path[1]: path prefix "//a" is not in normal form: write "/a"`,
			`plugin[0].rule[1].path_regexp[0]: error parsing regexp: missing closing ): ` + "`(`",
		}},
		{name: "deny status", body: "default = \"allow\"\ndeny_status = 200\n",
			want: []string{`plugin[0].deny_status: 200 is not an error status: want 400 to 599`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tryACL(tt.body, zerolog.Nop())
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestMillionDomainFile loads a block list of a million lines through the
// plugin and refuses a listed name. It logs the load time and the heap
// growth; it asserts only generous bounds.
func TestMillionDomainFile(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and loads a million-line list")
	}
	path := filepath.Join(t.TempDir(), "blocklist.txt")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	fmt.Fprintln(w, "# generated block list")
	for i := range 1_000_000 {
		switch i % 4 {
		case 0:
			fmt.Fprintf(w, "0.0.0.0 ads%d.network%d.example\n", i, i%7919)
		case 1:
			fmt.Fprintf(w, "*.track%d.network%d.example\n", i, i%7919)
		default:
			fmt.Fprintf(w, "host%d.network%d.example\n", i, i%7919)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	var logs bytes.Buffer
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	p, err := tryACL(fmt.Sprintf(`default = "allow"
rule = [ { action = "deny", domain_file = %q } ]
`, path), zerolog.New(&logs))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	heap := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("loaded 1,000,000 lines in %v; heap +%.1f MiB", took, float64(heap)/(1<<20))
	if took > 30*time.Second {
		t.Errorf("load took %v, want < 30s", took)
	}
	if heap > 1<<30 {
		t.Errorf("heap grew %.0f MiB, want < 1 GiB", float64(heap)/(1<<20))
	}
	if !strings.Contains(logs.String(), `"entries":1000000`) {
		t.Errorf("no load line with 1000000 entries: %s", logs.String())
	}
	for target, want := range map[string]string{
		"host999999.network2205.example:443": "deny", // the last line: 999999 % 7919 = 2205
		"ads4.network4.example:80":           "deny",
		"x.y.track5.network5.example:443":    "deny",
		"track5.network5.example:443":        "allow", // *. excludes the domain itself
		"www.example.com:443":                "allow",
	} {
		s := req{target: target}.session()
		if got := connect(t, p, s); got != want {
			t.Errorf("OnConnect(%s): got %s, want %s", target, got, want)
		}
	}
	runtime.KeepAlive(p)
}
