package auth

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-ldap/ldap/v3"
	"github.com/rs/zerolog"

	"ferry/config"
	"ferry/plugins"
	"ferry/test/testkit"
)

// buildLDAP builds a backend = "ldap" instance from body (max_failures =
// 0 unless body sets it).
func buildLDAP(t testing.TB, body string) (remotePlugin, error) {
	if !strings.Contains(body, "max_failures") {
		body += "max_failures = 0\n"
	}
	src := "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"auth\"]\n[[plugin]]\nname = \"auth\"\n" + body
	cfg, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		return remotePlugin{}, err
	}
	pc := &cfg.Plugins[0]
	svcs := plugins.NewServices()
	t.Cleanup(func() { svcs.Stop(context.Background()) })
	p, err := New(plugins.NewEnv("auth", zerolog.Nop(), svcs, pc.Decode))
	if err != nil {
		return remotePlugin{}, pc.WrapError(err)
	}
	return p.(remotePlugin), nil
}

func mustLDAP(t testing.TB, body string) remotePlugin {
	t.Helper()
	h, err := buildLDAP(t, body)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// ldapBase is a valid search-then-bind config for a directory at url.
func ldapBase(url string) string {
	return fmt.Sprintf("backend = \"ldap\"\nurl = %q\nsearch_base = \"ou=people,dc=example,dc=org\"\n"+
		"bind_user = \"cn=ferry,ou=services,dc=example,dc=org\"\nbind_password = \"pw\"\n", url)
}

func TestLDAPConfigErrors(t *testing.T) {
	const tmpl = "backend = \"ldap\"\nurl = \"ldaps://ldap.example\"\nbind_dn = \"uid={user},ou=people,dc=example,dc=org\"\n"
	tests := []struct{ name, body, want string }{
		{"no url", "backend = \"ldap\"\nbind_dn = \"uid={user},dc=x\"\n", "url: required with backend \"ldap\""},
		{"plain off loopback", strings.Replace(tmpl, "ldaps://", "ldap://", 1), "url: ldap:// without start_tls only to a loopback IP"},
		{"other scheme", strings.Replace(tmpl, "ldaps://", "https://", 1), "url: want ldaps:// or ldap://, not https://"},
		{"credentials", strings.Replace(tmpl, "ldaps://", "ldaps://u:p@", 1), "url: must not hold credentials"},
		{"url with a dn", strings.Replace(tmpl, "ldap.example", "ldap.example/dc=x", 1), "url: must be only scheme, host and port"},
		{"starttls on ldaps", tmpl + "start_tls = true\n", "start_tls: only applies with ldap://"},
		{"ca on plain", strings.Replace(tmpl, "ldaps://ldap.example", "ldap://127.0.0.1", 1) + "ca_file = \"ca.pem\"\n", "ca_file: only applies with ldaps:// or start_tls"},
		{"missing ca", tmpl + "ca_file = \"/nonexistent/ca.pem\"\n", "ca_file: open /nonexistent/ca.pem"},
		{"neither way", "backend = \"ldap\"\nurl = \"ldaps://ldap.example\"\n", "bind_dn: set bind_dn (a DN with {user}), or search_base"},
		{"both ways", tmpl + "search_base = \"dc=x\"\n", "bind_dn: give bind_dn or search_base, not both"},
		{"template without user", strings.Replace(tmpl, "{user}", "alice", 1), "bind_dn: \"uid=alice,ou=people,dc=example,dc=org\" has no {user}"},
		{"template not a dn", strings.Replace(tmpl, "uid={user},", "uid={user},,,", 1), "bind_dn: invalid DN"},
		{"filter with template", tmpl + "search_filter = \"(uid={user})\"\n", "search_filter: only applies with search_base"},
		{"search without account", "backend = \"ldap\"\nurl = \"ldaps://l.example\"\nsearch_base = \"dc=x\"\n", "bind_user: required with search_base"},
		{"filter without user", ldapBase("ldaps://l.example") + "search_filter = \"(uid=alice)\"\n", "search_filter: \"(uid=alice)\" has no {user}"},
		{"bad filter", ldapBase("ldaps://l.example") + "search_filter = \"(uid={user}\"\n", "search_filter: invalid filter"},
		{"bad base", strings.Replace(ldapBase("ldaps://l.example"), "ou=people", "ou people", 1), "search_base: invalid DN"},
		{"no password", tmpl + "bind_user = \"cn=ferry,dc=x\"\n", "bind_password: required with bind_user"},
		{"password alone", tmpl + "bind_password = \"pw\"\n", "bind_password: only applies with bind_user"},
		{"two passwords", ldapBase("ldaps://l.example") + "bind_password_file = \"pw.txt\"\n", "bind_password_file: give bind_password or bind_password_file, not both"},
		{"missing password file", strings.Replace(ldapBase("ldaps://l.example"), "bind_password =", "bind_password_file =", 1), "bind_password_file: "},
		{"two group ways", tmpl + "group_attribute = \"memberOf\"\ngroup_search_base = \"ou=groups,dc=x\"\n", "group_attribute: give group_attribute or group_search_base, not both"},
		{"bad attribute", tmpl + "group_attribute = \"member of\"\n", "group_attribute: invalid attribute name"},
		{"group filter alone", tmpl + "group_search_filter = \"(member={dn})\"\n", "group_search_filter: only applies with group_search_base"},
		{"group filter without placeholder", tmpl + "group_search_base = \"ou=groups,dc=x\"\ngroup_search_filter = \"(cn=x)\"\n", "group_search_filter: \"(cn=x)\" has no {dn} or {user}"},
		{"upstreams", tmpl + "upstreams = [\"office\"]\n", "upstreams: only applies with backend = \"http\""},
		{"source addresses", tmpl + "source_addresses = [\"127.0.0.1\"]\n", "source_addresses: only applies with backend = \"http\""},
		{"users too", tmpl + "users = { a = \"plain:x\" }\n", "backend: users and htpasswd do not apply"},
		{"ldap key with http", "backend = \"http\"\nurl = \"https://a.example/\"\nbind_dn = \"uid={user},dc=x\"\nstart_tls = true\n", "bind_dn: only applies with backend = \"ldap\""},
		{"ldap key with htpasswd", "users = { a = \"plain:x\" }\nsearch_base = \"dc=x\"\n", "search_base: only applies with backend = \"ldap\""},
		{"url with htpasswd", "users = { a = \"plain:x\" }\nurl = \"ldaps://l.example\"\n", "url and the other remote settings need backend = \"http\" or \"ldap\""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := buildLDAP(t, tt.body)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}
}

// TestLDAPConfigErrorsAtOnce: the problems of one table come together,
// each at its key's position.
func TestLDAPConfigErrorsAtOnce(t *testing.T) {
	_, err := buildLDAP(t, "backend = \"ldap\"\nurl = \"ldap://ldap.example\"\nbind_dn = \"uid=alice\"\n"+
		"group_search_base = \"ou groups\"\nupstreams = [\"x\"]\n")
	want := []string{"t.toml:7:1: plugin[0].url: ldap:// without start_tls", "t.toml:8:1: plugin[0].bind_dn: \"uid=alice\" has no {user}",
		"t.toml:9:1: plugin[0].group_search_base: invalid DN", "t.toml:10:1: plugin[0].upstreams: only applies"}
	for _, w := range want {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("got %v, want %q in it", err, w)
		}
	}
}

func TestLDAPEscaping(t *testing.T) {
	tests := []struct{ user, dn, filter string }{
		{"alice", "uid=alice,ou=people,dc=example,dc=org", "(uid=alice)"},
		{"a,b+c", `uid=a\,b\+c,ou=people,dc=example,dc=org`, "(uid=a,b+c)"},
		{"*", "uid=*,ou=people,dc=example,dc=org", `(uid=\2a)`},
		{"x)(uid=*", `uid=x)(uid=*,ou=people,dc=example,dc=org`, `(uid=x\29\28uid=\2a)`},
		{`#lead "q" <a>;`, `uid=\#lead \"q\" \<a\>\;,ou=people,dc=example,dc=org`, `(uid=#lead "q" <a>;)`},
		{" pad ", `uid=\ pad\ ,ou=people,dc=example,dc=org`, "(uid= pad )"},
		{"nul\x00\\", `uid=nul\00\\,ou=people,dc=example,dc=org`, `(uid=nul\00\5c)`},
		{"é", "uid=é,ou=people,dc=example,dc=org", `(uid=\c3\a9)`},
	}
	for _, tt := range tests {
		t.Run(tt.user, func(t *testing.T) {
			l := &ldapChecker{bindDN: "uid={user},ou=people,dc=example,dc=org"}
			dn, _, err := l.findUser(nil, tt.user)
			if err != nil || dn != tt.dn {
				t.Errorf("DN: got %q (%v), want %q", dn, err, tt.dn)
			}
			if parsed, err := ldap.ParseDN(dn); err != nil || parsed.RDNs[0].Attributes[0].Value != tt.user {
				t.Errorf("DN %q does not parse back to the user: %v", dn, err)
			}
			if got := strings.ReplaceAll("(uid={user})", "{user}", ldap.EscapeFilter(tt.user)); got != tt.filter {
				t.Errorf("filter: got %q, want %q", got, tt.filter)
			}
			if _, err := ldap.CompileFilter(tt.filter); err != nil {
				t.Errorf("filter %q does not compile: %v", tt.filter, err)
			}
		})
	}
}

func TestLDAPNameAttrs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"uid={user},ou=people,dc=example,dc=org", []string{"uid"}},
		{"(&(objectClass=inetOrgPerson)(|(uid={user})(mail={user})))", []string{"uid", "mail"}},
		{"cn=x+sAMAccountName={user},dc=y", []string{"sAMAccountName"}},
		{"(uid={user})(uid={user})", []string{"uid"}},
		{"(uid=*{user}*)", nil},
		{"cn={user} smith,dc=x", nil},
		{"(cn=a{user})", nil},
	}
	for _, tt := range tests {
		if got := nameAttrs(tt.in); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("nameAttrs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestLDAPGroupNames(t *testing.T) {
	tests := []struct {
		name    string
		values  []string
		want    []string
		wantErr bool
	}{
		{name: "dns", values: []string{"cn=admins,ou=groups,dc=example,dc=org", "CN=Ops,OU=x"}, want: []string{"admins", "Ops"}},
		{name: "plain values", values: []string{"staff", "dev-team"}, want: []string{"staff", "dev-team"}},
		{name: "escaped rdn", values: []string{`cn=a\,b,dc=x`}, want: []string{"a,b"}},
		{name: "multi-valued rdn", values: []string{"cn=x+uid=y,dc=z"}, want: []string{"x"}},
		{name: "not a dn", values: []string{"a=b=c,,"}, want: []string{"a=b=c,,"}},
		{name: "unusable names dropped", values: []string{"cn=Domain Admins,dc=x", "", "tab\tbed", strings.Repeat("g", 256), "ok"}, want: []string{"ok"}},
		{name: "too many", values: make([]string, maxUserGroups+1), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := groupNames(tt.values)
			if (err != nil) != tt.wantErr || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %q, %v; want %q, error %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// ldapUsers are the directory of the tests against slapd.
var ldapUsers = []testkit.LDAPUser{
	{UID: "alice", Password: "pw-alice", Groups: []string{"staff", "ops"}},
	{UID: "bob", Password: "pw-bob", Groups: []string{"dev"}},
	{UID: "carol", Password: "pw-carol"},
}

// TestLDAPLogin: each way to find the user and the groups, over LDAPS
// and StartTLS, against a real slapd: the right password allows with the
// directory's groups; a wrong one, an unknown user, a filter
// metacharacter and an empty password are denied, not backend errors.
func TestLDAPLogin(t *testing.T) {
	d := testkit.StartSlapd(t, ldapUsers)
	ca := fmt.Sprintf("ca_file = %q\n", d.CAFile)
	search := ldapBase(d.LDAPS) + ca
	search = strings.Replace(search, "bind_password = \"pw\"", fmt.Sprintf("bind_password = %q", testkit.LDAPServicePass), 1)
	tmpl := fmt.Sprintf("backend = \"ldap\"\nurl = %q\nstart_tls = true\nbind_dn = \"uid={user},ou=people,dc=example,dc=org\"\n", d.LDAP) + ca
	groupSearch := "group_search_base = \"ou=groups,dc=example,dc=org\"\n"
	configs := []struct{ name, body string }{
		{"search, memberOf, ldaps", search + "group_attribute = \"memberOf\"\n"},
		{"search, group search, ldaps", search + groupSearch},
		{"template, memberOf, starttls", tmpl + "group_attribute = \"memberOf\"\n"},
		{"template, group search by uid, starttls", tmpl + groupSearch + "group_search_filter = \"(member=uid={user},ou=people,dc=example,dc=org)\"\n"},
	}
	logins := []struct {
		user, pass string
		groups     []string
		allow      bool
	}{
		{"alice", "pw-alice", []string{"ops", "staff"}, true},
		{"bob", "pw-bob", []string{"dev"}, true},
		{"carol", "pw-carol", nil, true},
		{"alice", "pw-bob", nil, false},
		{"nobody", "pw-alice", nil, false},
		{"*", "pw-alice", nil, false},
		{"alice", "", nil, false},
		// The directory binds these as alice, but an acl rule for user
		// alice would not match them.
		{"ALICE", "pw-alice", nil, false},
		{"alice ", "pw-alice", nil, false},
	}
	for _, cf := range configs {
		t.Run(cf.name, func(t *testing.T) {
			h := mustLDAP(t, cf.body+"negative_cache_ttl = \"0s\"\n")
			for _, l := range logins {
				s := httpSession()
				err := h.Authenticate(context.Background(), s, l.user, l.pass)
				if (err == nil) != l.allow || !reflect.DeepEqual(s.Groups, l.groups) {
					t.Errorf("%s/%s: got %v, groups %q; want allow %v, groups %q", l.user, l.pass, err, s.Groups, l.allow, l.groups)
				}
			}
			if c := h.Counts(); c.BackendErrors != 0 || c.Failures != 6 {
				t.Errorf("counts %+v, want 6 failures and no backend error", c)
			}
		})
	}
}

// TestLDAPDirectoryDown: a login while slapd is down is a backend error
// (refused, or admitted on grace), and the pool dials anew once it is
// back; kept connections are reused between logins meanwhile.
func TestLDAPDirectoryDown(t *testing.T) {
	d := testkit.StartSlapd(t, ldapUsers)
	body := strings.Replace(ldapBase(d.LDAPS), "\"pw\"", fmt.Sprintf("%q", testkit.LDAPServicePass), 1) +
		fmt.Sprintf("ca_file = %q\ncache_ttl = \"0s\"\non_backend_error = \"grace\"\ntimeout = \"1s\"\n", d.CAFile)
	h := mustLDAP(t, body)
	var dials atomic.Int64
	pool := h.remote.backend.(*ldapChecker).pool
	pool.dialHook = func() { dials.Add(1) }
	login := func(user string) error {
		return h.Authenticate(context.Background(), httpSession(), user, "pw-"+user)
	}
	for range 20 {
		if err := login("alice"); err != nil {
			t.Fatalf("alice: %v", err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Errorf("20 logins one after the other dialed %d times, want 1", n)
	}
	d.Stop(t)
	if err := login("alice"); err != nil {
		t.Errorf("alice on grace while the directory is down: %v", err)
	}
	if err := login("bob"); err == nil {
		t.Error("bob, never allowed before, admitted while the directory is down")
	}
	if c := h.Counts(); c.BackendErrors != 2 || c.Grace != 1 || c.Failures != 0 {
		t.Errorf("counts %+v, want 2 backend errors, 1 grace, no failure", c)
	}
	d.Start(t)
	if err := login("bob"); err != nil {
		t.Errorf("bob once the directory is back: %v", err)
	}
}

// hostileLDAP is a server on loopback that answers every connection with
// answer, and counts the bytes it wrote.
func hostileLDAP(t *testing.T, answer func(c net.Conn) int64) (string, *atomic.Int64) {
	var sent atomic.Int64
	target := testkit.NewTCPTarget(t, func(c *net.TCPConn) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		c.Read(buf) // the service account's bind
		sent.Add(answer(c))
	})
	return "ldap://" + target.Addr, &sent
}

// TestLDAPHostileServer: a directory that floods a huge answer, or none,
// costs a backend error within the bounds: at most maxLDAPRead read, and
// no longer than timeout.
func TestLDAPHostileServer(t *testing.T) {
	tests := []struct {
		name   string
		answer func(c net.Conn) int64
	}{
		{name: "huge answer", answer: func(c net.Conn) int64 {
			// A bind response of 100 MB: SEQUENCE, 4-byte length.
			hdr := []byte{0x30, 0x84, 0x05, 0xf5, 0xe1, 0x00, 0x02, 0x01, 0x01}
			n, _ := c.Write(hdr)
			chunk := make([]byte, 64<<10)
			total := int64(n)
			for total < 100<<20 {
				n, err := c.Write(chunk)
				total += int64(n)
				if err != nil {
					break
				}
			}
			return total
		}},
		{name: "silent", answer: func(c net.Conn) int64 {
			c.Read(make([]byte, 1)) // until ferry gives up
			return 0
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, sent := hostileLDAP(t, tt.answer)
			h := mustLDAP(t, ldapBase(url)+"timeout = \"1s\"\n")
			start := time.Now()
			err := h.Authenticate(context.Background(), httpSession(), "alice", "pw")
			took := time.Since(start)
			if err == nil || h.Counts().BackendErrors != 1 {
				t.Fatalf("got %v, counts %+v; want a backend error", err, h.Counts())
			}
			if took > 2*time.Second {
				t.Errorf("took %v, want about the timeout (1s)", took)
			}
			if s := sent.Load(); s > 20*maxLDAPRead {
				t.Errorf("the server wrote %d bytes before ferry hung up, want about %d", s, maxLDAPRead)
			}
		})
	}
}

// TestLDAPBindLeaves: a login leaves its connection bound as the user
// (the directory says so), marked not bound as the service account, so
// that the next login's search rebinds first and runs as the service
// account, never as the previous user.
func TestLDAPBindLeaves(t *testing.T) {
	d := testkit.StartSlapd(t, ldapUsers)
	body := strings.Replace(ldapBase(d.LDAPS), "\"pw\"", fmt.Sprintf("%q", testkit.LDAPServicePass), 1) +
		fmt.Sprintf("ca_file = %q\ncache_ttl = \"0s\"\n", d.CAFile)
	h := mustLDAP(t, body)
	l := h.remote.backend.(*ldapChecker)
	whoami := func(c *ldapConn) string {
		t.Helper()
		res, err := c.c.WhoAmI(nil)
		if err != nil {
			t.Fatalf("whoami: %v", err)
		}
		return res.AuthzID
	}
	for _, user := range []string{"alice", "bob"} {
		if err := h.Authenticate(context.Background(), httpSession(), user, "pw-"+user); err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		c, reused, err := l.pool.get(context.Background())
		if err != nil || !reused {
			t.Fatalf("after %s's login: reused %v (%v), want the kept connection", user, reused, err)
		}
		if got, want := whoami(c), "dn:"+testkit.LDAPUserDN(user); got != want || c.service {
			t.Errorf("after %s's login: bound as %q, marked as the service account %v; want %q, not marked", user, got, c.service, want)
		}
		if err := c.bind(l.service, true); err != nil {
			t.Fatal(err)
		}
		if got, want := whoami(c), "dn:"+testkit.LDAPServiceDN; got != want {
			t.Errorf("after the rebind: bound as %q, want %q", got, want)
		}
		c.service = false // as the login left it
		l.pool.put(c)
	}
}

// TestLDAPNoBindWithout: a search that finds several entries is a
// denial with a warning, after a bind as the dummy DN like no entry; an
// empty password is refused without a connection to the directory.
func TestLDAPNoBindWithout(t *testing.T) {
	d := testkit.StartSlapd(t, ldapUsers)
	body := strings.Replace(ldapBase(d.LDAPS), "\"pw\"", fmt.Sprintf("%q", testkit.LDAPServicePass), 1) +
		fmt.Sprintf("ca_file = %q\nsearch_filter = \"(|(uid={user})(uid=bob))\"\n", d.CAFile)
	var logs bytes.Buffer
	h := mustLDAP(t, body)
	l := h.remote.backend.(*ldapChecker)
	l.log = zerolog.New(&lockedWriter{w: &logs})
	var dials atomic.Int64
	l.pool.dialHook = func() { dials.Add(1) }
	if err := h.Authenticate(context.Background(), httpSession(), "carol", ""); err == nil || dials.Load() != 0 {
		t.Errorf("empty password: %v after %d dials, want a refusal without any", err, dials.Load())
	}
	if err := h.Authenticate(context.Background(), httpSession(), "bob", "pw-bob"); err != nil {
		t.Errorf("bob, the one entry: %v", err)
	}
	if err := h.Authenticate(context.Background(), httpSession(), "alice", "pw-alice"); err == nil {
		t.Error("alice, whose search finds alice and bob: admitted")
	}
	if !strings.Contains(logs.String(), "the user search found several entries") || !strings.Contains(logs.String(), `"user":"alice"`) {
		t.Errorf("no warning naming alice: %s", logs.String())
	}
	if c := h.Counts(); c.Failures != 2 || c.BackendErrors != 0 {
		t.Errorf("counts %+v, want 2 failures, no backend error", c)
	}
}

// FuzzLDAPEscaping: whatever the user name, the DN built from the
// template parses back to one RDN holding exactly that name under the
// template's base, and the filter compiles to one equality match of
// exactly that name: no name can change which entry is bound or
// searched (RFC 4514, RFC 4515).
func FuzzLDAPEscaping(f *testing.F) {
	for _, s := range []string{"alice", "a,b", "*", "x)(uid=*", "#x", " pad ", "nul\x00", `\`, "é", "a+b=c", "\xff"} {
		f.Add(s)
	}
	l := &ldapChecker{bindDN: "uid={user},ou=people,dc=example,dc=org"}
	f.Fuzz(func(t *testing.T, user string) {
		if user == "" || !utf8.ValidString(user) {
			return // refused before any bind, or not a DN string value
		}
		dn, _, _ := l.findUser(nil, user)
		parsed, err := ldap.ParseDN(dn)
		if err != nil || len(parsed.RDNs) != 4 || len(parsed.RDNs[0].Attributes) != 1 || parsed.RDNs[0].Attributes[0].Value != user {
			t.Fatalf("user %q: DN %q parses to %v (%v)", user, dn, parsed, err)
		}
		filter := strings.ReplaceAll("(uid={user})", "{user}", ldap.EscapeFilter(user))
		p, err := ldap.CompileFilter(filter)
		if err != nil || len(p.Children) != 2 || p.Children[1].Data.String() != user {
			t.Fatalf("user %q: filter %q compiles to %v (%v)", user, filter, p, err)
		}
	})
}
