package auth

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/crypto/bcrypt"

	"ferry/config"
	"ferry/plugins"
)

// hashOf makes a bcrypt hash at the lowest cost, in htpasswd -B's "$2y$"
// spelling.
func hashOf(t testing.TB, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return "$2y$" + string(h[4:])
}

// build makes an instance from a TOML table body through the real config
// decoder, with errors positioned as ferry shows them. Logs go to logs
// when it is not nil.
func build(t testing.TB, body string, logs *bytes.Buffer) (*Plugin, error) {
	t.Helper()
	return buildWith(t, body, logs, plugins.NewServices())
}

func buildWith(t testing.TB, body string, logs *bytes.Buffer, svcs *plugins.Services) (*Plugin, error) {
	t.Helper()
	src := "[[listener]]\nlisten = \"127.0.0.1:1\"\nplugins = [\"auth\"]\n[[plugin]]\nname = \"auth\"\n" + body
	cfg, err := config.Parse("t.toml", []byte(src))
	if err != nil {
		return nil, err
	}
	log := zerolog.Nop()
	if logs != nil {
		log = zerolog.New(&lockedWriter{w: logs})
	}
	pc := &cfg.Plugins[0]
	p, err := New(plugins.NewEnv("auth", log, svcs, pc.Decode))
	if err != nil {
		return nil, pc.WrapError(err)
	}
	return p.(*Plugin), nil
}

// lockedWriter lets the poller goroutine and the test share a buffer.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func mustBuild(t testing.TB, body string) *Plugin {
	t.Helper()
	p, err := build(t, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// writeUsers writes an htpasswd file and returns its path as a TOML string.
func writeUsers(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%q", path)
}

// countCompares makes p count its bcrypt checks.
func countCompares(p *Plugin) *atomic.Int64 {
	var n atomic.Int64
	p.compare = func(hash, pw []byte) error {
		n.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	}
	return &n
}

var testSession = &plugins.Session{
	ID:       "t1",
	Client:   &net.TCPAddr{IP: net.IPv4(192, 0, 2, 7), Port: 40000},
	Protocol: "socks5",
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeUsers(t, filepath.Join(dir, "good"), "alice:"+hashOf(t, "a")+"\n")
	md5 := writeUsers(t, filepath.Join(dir, "md5"), "# users\n\nalice:$apr1$abc$0123456789abcdefghijkl\n")
	missing := fmt.Sprintf("%q", filepath.Join(dir, "missing"))
	tests := []struct {
		name, body string
		want       string // substring of the error
		notWant    string // must not appear (a secret)
	}{
		{"no users", "realm = \"x\"\n", "t.toml:4:3: plugin[0]: users: none given; set users, htpasswd, or both", ""},
		{"empty users", "users = {}\n", "t.toml:6:1: plugin[0].users: none given", ""},
		{"unknown key", "users = { a = \"plain:x\" }\nreload = \"1s\"\n", "t.toml:7:1: plugin[0].reload: unknown key", ""},
		{"plain text without prefix", "users = { alice = \"hunter2\" }\n",
			`t.toml:6:11: plugin[0].users.alice: want a bcrypt hash ("$2y$10$...", from htpasswd -nB alice) or "plain:PASSWORD"`, "hunter2"},
		{"md5 inline", "[plugin.users]\nalice = \"$apr1$abc$0123456789abcdefghijkl\"\n",
			"t.toml:7:1: plugin[0].users.alice: MD5 ($apr1$) hashes are not supported: use bcrypt (htpasswd -B)", "0123456789"},
		{"short bcrypt", "users = { alice = \"$2y$10$abc\" }\n", "users.alice: malformed bcrypt hash: 10 characters, want 60", ""},
		{"empty plain", "users = { bob = \"plain:\" }\n", `users.bob: empty password after "plain:"`, ""},
		{"colon in name", "users = { \"a:b\" = \"plain:x\" }\n", `users."a:b": user name contains ':'`, ""},
		{"wrong type", "users = { alice = 1 }\n", "plugin[0].users.alice:", ""},
		{"empty realm", "realm = \"\"\nusers = { a = \"plain:x\" }\n", "t.toml:6:1: plugin[0].realm: must not be empty", ""},
		{"realm control char", "realm = \"a\\nb\"\nusers = { a = \"plain:x\" }\n", "realm: use printable ASCII only", ""},
		{"interval without file", "users = { a = \"plain:x\" }\nreload_interval = \"1s\"\n", "plugin[0].reload_interval: only applies with htpasswd", ""},
		{"interval too short", "htpasswd = " + good + "\nreload_interval = \"10ms\"\n", `reload_interval: must be at least 100ms, or "0s" to never reload`, ""},
		{"interval bare number", "htpasswd = " + good + "\nreload_interval = 5\n", "reload_interval: must be a string with a unit", ""},
		{"missing file", "htpasswd = " + missing + "\n", "t.toml:6:1: plugin[0].htpasswd: stat " + filepath.Join(dir, "missing") + ": no such file or directory", ""},
		{"md5 in file", "htpasswd = " + md5 + "\n",
			"plugin[0].htpasswd: " + filepath.Join(dir, "md5") + ":3: user alice: MD5 ($apr1$) hashes are not supported", "0123456789"},
		{"negative max_failures", "users = { a = \"plain:x\" }\nmax_failures = -1\n", "t.toml:7:1: plugin[0].max_failures: must be 0 (never lock out) or more", ""},
		{"zero failure_window", "users = { a = \"plain:x\" }\nfailure_window = \"0s\"\n", "t.toml:7:1: plugin[0].failure_window: must be more than 0s", ""},
		{"zero lockout", "users = { a = \"plain:x\" }\nlockout = \"0s\"\n", "plugin[0].lockout: must be more than 0s", ""},
		{"max_lockout under lockout", "users = { a = \"plain:x\" }\nlockout = \"10s\"\nmax_lockout = \"5s\"\n", "t.toml:8:1: plugin[0].max_lockout: must be at least lockout (10s)", ""},
		{"bad lockout", "users = { a = \"plain:x\" }\nlockout = \"soon\"\n", "plugin[0].lockout: invalid duration", ""},
		{"no check slots", "users = { a = \"plain:x\" }\nmax_concurrent_checks = 0\n", "plugin[0].max_concurrent_checks: must be at least 1", ""},
		{"user in both", "htpasswd = " + good + "\nusers = { alice = \"plain:x\" }\n",
			filepath.Join(dir, "good") + ":1: user alice: also defined in users.alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.body, nil)
			if err == nil {
				t.Fatalf("got no error, want %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got error\n%v\nwant it to contain\n%s", err, tt.want)
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Fatalf("error repeats the secret %q: %v", tt.notWant, err)
			}
		})
	}
}

func TestParseHtpasswd(t *testing.T) {
	h := hashOf(t, "pw")
	tests := []struct {
		name    string
		content string
		want    []string // user names
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"comments blanks crlf", "# made by htpasswd\r\n\r\n  \nalice:" + h + "\r\n#bob:" + h + "\n", []string{"alice"}, ""},
		{"all bcrypt prefixes", "a:" + h + "\nb:$2a$" + h[4:] + "\nc:$2b$" + h[4:] + "\n", []string{"a", "b", "c"}, ""},
		{"comment field", "alice:" + h + ":Alice Liddell\n", []string{"alice"}, ""},
		{"no colon", "alice\n", nil, "f:1: want user:hash"},
		{"empty user", ":" + h + "\n", nil, "f:1: empty user name"},
		{"duplicate", "alice:" + h + "\n\nalice:" + h + "\n", nil, "f:3: user alice: already on line 1"},
		{"apr1", "x:" + h + "\nalice:$apr1$salt$hash\n", nil, "f:2: user alice: MD5 ($apr1$) hashes are not supported: use bcrypt (htpasswd -B)"},
		{"sha1", "alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n", nil, "f:1: user alice: SHA-1 ({SHA}) hashes are not supported"},
		{"crypt", "alice:rl0qTzIfXoa0s\n", nil, "f:1: user alice: crypt(3) DES hashes are not supported"},
		{"sha512 crypt", "alice:$6$salt$hash\n", nil, "SHA-512-crypt ($6$) hashes are not supported"},
		{"2x", "alice:$2x$" + h[4:] + "\n", nil, "bcrypt $2x$ (the buggy variant) hashes are not supported"},
		{"plain text", "alice:hunter2\n", nil, "f:1: user alice: not a bcrypt hash ($2y$, $2a$ or $2b$): make one with htpasswd -B"},
		{"truncated bcrypt", "alice:" + h[:50] + "\n", nil, "f:1: user alice: malformed bcrypt hash: 50 characters, want 60"},
		{"bad cost", "alice:$2y$99" + h[6:] + "\n", nil, "f:1: user alice: malformed bcrypt hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := parseHtpasswd("f", []byte(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), h[7:]) {
					t.Fatalf("error repeats a secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(users) != len(tt.want) {
				t.Fatalf("got %d users, want %v", len(users), tt.want)
			}
			for _, name := range tt.want {
				if _, ok := users[name]; !ok {
					t.Fatalf("user %s missing; got %v", name, users)
				}
			}
		})
	}
}

func TestAuthenticate(t *testing.T) {
	dir := t.TempDir()
	file := writeUsers(t, filepath.Join(dir, "users"), "carol:"+hashOf(t, "c-pass")+"\n")
	p := mustBuild(t, fmt.Sprintf("htpasswd = %s\n[plugin.users]\nalice = %q\nbob = %q\ndev = \"plain:dev-pass\"\n",
		file, hashOf(t, "secret"), "$2a$"+hashOf(t, "b-pass")[4:]))
	tests := []struct {
		name, user, pass string
		want             error
	}{
		{"bcrypt $2y$", "alice", "secret", nil},
		{"bcrypt $2a$", "bob", "b-pass", nil},
		{"from file", "carol", "c-pass", nil},
		{"plain", "dev", "dev-pass", nil},
		{"wrong password", "alice", "Secret", errWrongPassword},
		{"wrong plain password", "dev", "dev-pas", errWrongPassword},
		{"plain password longer", "dev", "dev-pass!", errWrongPassword},
		{"empty password", "alice", "", errWrongPassword},
		{"unknown user", "mallory", "secret", errUnknownUser},
		{"empty user", "", "", errUnknownUser},
		{"user names are case-sensitive", "Alice", "secret", errUnknownUser},
		{"another user's password", "bob", "secret", errWrongPassword},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := p.check(tt.user, tt.pass); got != tt.want {
				t.Fatalf("check(%q, %q): got %v, want %v", tt.user, tt.pass, got, tt.want)
			}
			err := p.Authenticate(context.Background(), testSession, tt.user, tt.pass)
			if (err == nil) != (tt.want == nil) {
				t.Fatalf("Authenticate: got %v, want error %v", err, tt.want)
			}
			if err != nil && plugins.CodeOf(err) != plugins.CodeAuthRequired {
				t.Fatalf("Authenticate: got code %v, want %v", plugins.CodeOf(err), plugins.CodeAuthRequired)
			}
		})
	}
	if got := p.Realm(); got != "ferry" {
		t.Fatalf("default realm: got %q, want ferry", got)
	}
}

// TestRefusalLog checks the warn line: client, user and reason, no
// password, and the same message to the client whatever was wrong.
func TestRefusalLog(t *testing.T) {
	var logs bytes.Buffer
	p, err := build(t, "realm = \"corp\"\nusers = { alice = \"plain:right-pw\" }\n", &logs)
	if err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	e1 := p.Authenticate(context.Background(), testSession, "alice", "wrong-pw")
	e2 := p.Authenticate(context.Background(), testSession, "nobody", "wrong-pw")
	if e1 == nil || e2 == nil || e1.Error() != e2.Error() {
		t.Fatalf("refusals differ or are missing: %v / %v", e1, e2)
	}
	out := logs.String()
	for _, want := range []string{`"level":"warn"`, `"client":"192.0.2.7:40000"`, `"user":"alice"`, `"reason":"wrong password"`,
		`"user":"nobody"`, `"reason":"unknown user"`, `"proto":"socks5"`, `"id":"t1"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "wrong-pw") || strings.Contains(out, "right-pw") {
		t.Errorf("log contains a password:\n%s", out)
	}
	if p.Realm() != "corp" {
		t.Errorf("realm: got %q, want corp", p.Realm())
	}
	// A session without an id (none taken yet) gets no empty id field.
	logs.Reset()
	p.Authenticate(context.Background(), &plugins.Session{Protocol: "socks5"}, "alice", "wrong-pw")
	if out := logs.String(); strings.Contains(out, `"id":""`) || !strings.Contains(out, `"user":"alice"`) {
		t.Errorf("refusal for a session without an id: want a line without an empty id:\n%s", out)
	}
	long := strings.Repeat("x", 300)
	logs.Reset()
	p.Authenticate(context.Background(), testSession, long, "pw")
	if strings.Contains(logs.String(), long) {
		t.Errorf("a 300-byte user name was logged whole")
	}
}

// TestCache counts bcrypt checks: a known user pays one, then none; every
// first refusal pays exactly one, so unknown users and wrong passwords
// take about the same time, and its repeats none (the negative cache).
func TestCache(t *testing.T) {
	p := mustBuild(t, fmt.Sprintf("users = { alice = %q, bob = %q, dev = \"plain:d\" }\n", hashOf(t, "a"), hashOf(t, "b")))
	n := countCompares(p)
	steps := []struct {
		name, user, pass string
		ok               bool
		compares         int64 // bcrypt checks this step costs
	}{
		{"first login", "alice", "a", true, 1},
		{"cached", "alice", "a", true, 0},
		{"cached again", "alice", "a", true, 0},
		{"wrong password pays bcrypt", "alice", "x", false, 1},
		{"wrong password again: the negative cache", "alice", "x", false, 0},
		{"another wrong password", "alice", "y", false, 1},
		{"other user first", "bob", "b", true, 1},
		{"other user cached", "bob", "b", true, 0},
		{"bob's cache is not alice's", "alice", "b", false, 1},
		{"unknown user pays the dummy", "eve", "a", false, 1},
		{"unknown user again: the negative cache", "eve", "a", false, 0},
		{"plain user needs no bcrypt", "dev", "d", true, 0},
		{"wrong plain password pays the dummy", "dev", "x", false, 1},
		{"wrong plain password again: the negative cache", "dev", "x", false, 0},
		{"a cached refusal does not stop the right password", "alice", "a", true, 0},
	}
	for _, st := range steps {
		before := n.Load()
		err := p.check(st.user, st.pass)
		if (err == nil) != st.ok {
			t.Fatalf("%s: got %v, want ok=%v", st.name, err, st.ok)
		}
		if got := n.Load() - before; got != st.compares {
			t.Fatalf("%s: %d bcrypt checks, want %d", st.name, got, st.compares)
		}
	}
	if got := p.cache.len(); got != 2 {
		t.Fatalf("cache holds %d entries, want 2 (alice, bob)", got)
	}
}

// cachedEntries lists what c holds.
func cachedEntries(c *cache) []cached {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []cached
	for _, m := range []map[[32]byte]cached{c.cur, c.old} {
		for _, v := range m {
			out = append(out, v)
		}
	}
	return out
}

func TestCacheBound(t *testing.T) {
	c := newCache(8)
	var last [32]byte
	for i := range 100 {
		last = c.sum(fmt.Sprint("u", i), "pw", []byte("h"))
		c.add(last, fmt.Sprint("u", i), []byte("h"))
		if c.len() > 8 {
			t.Fatalf("after %d adds the cache holds %d entries, want at most 8", i+1, c.len())
		}
	}
	if !c.hit(last) {
		t.Fatal("the newest entry was dropped")
	}
	if c.hit(c.sum("u0", "pw", []byte("h"))) {
		t.Fatal("the oldest entry survived 100 adds in a cache of 8")
	}
	// Keys differ when any field does, including where one ends.
	if c.sum("ab", "c", nil) == c.sum("a", "bc", nil) {
		t.Fatal("sum is ambiguous across field boundaries")
	}
}

func TestMaxCost(t *testing.T) {
	h := func(cost int) entry {
		b, _ := bcrypt.GenerateFromPassword([]byte("x"), cost)
		return entry{hash: b}
	}
	plain := entry{plain: []byte("x")}
	tests := []struct {
		name  string
		users map[string]entry
		want  int
	}{
		{"none", nil, bcrypt.MinCost},
		{"plain only", map[string]entry{"a": plain}, bcrypt.MinCost},
		{"one cost", map[string]entry{"a": h(5), "b": h(5), "d": plain}, 5},
		{"the highest, not the most common", map[string]entry{"a": h(4), "b": h(4), "c": h(6), "d": plain}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := maxCost(tt.users); got != tt.want {
				t.Fatalf("got %d, want %d", got, tt.want)
			}
		})
	}
}

// TestReload drives reload by hand through a sequence of file changes.
func TestReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	ha1, ha2, hb := hashOf(t, "a1"), hashOf(t, "a2"), hashOf(t, "b")
	var logs bytes.Buffer
	p, err := build(t, "htpasswd = "+writeUsers(t, path, "alice:"+ha1+"\n")+"\n", &logs)
	if err != nil {
		t.Fatal(err)
	}
	p.settle = 0 // each write is whole: read it at once
	n := countCompares(p)
	type login struct {
		user, pass string
		ok         bool
	}
	steps := []struct {
		name    string
		content string // "" with remove: delete the file
		remove  bool
		logs    string // substring of the poll's log, "" for none
		logins  []login
	}{
		{"unchanged", "alice:" + ha1 + "\n", false, "",
			[]login{{"alice", "a1", true}, {"bob", "b", false}}},
		{"add bob", "alice:" + ha1 + "\nbob:" + hb + "\n", false, `"users":2,"message":"users reloaded"`,
			[]login{{"alice", "a1", true}, {"bob", "b", true}}},
		{"change alice's password, same size", "alice:" + ha2 + "\nbob:" + hb + "\n", false, "users reloaded",
			[]login{{"alice", "a1", false}, {"alice", "a2", true}, {"bob", "b", true}}},
		{"bad file keeps the users", "alice:" + ha2 + "\nbob:$apr1$x$y\n", false,
			path + `:2: user bob: MD5 ($apr1$) hashes are not supported: use bcrypt (htpasswd -B)","users":2,"message":"reload users: keeping the current ones"`,
			[]login{{"alice", "a2", true}, {"bob", "b", true}}},
		{"same bad file is not logged again", "alice:" + ha2 + "\nbob:$apr1$x$y\n", false, "",
			[]login{{"bob", "b", true}}},
		{"deleted file keeps the users", "", true, "no such file or directory",
			[]login{{"alice", "a2", true}, {"bob", "b", true}}},
		{"remove bob", "alice:" + ha2 + "\n", false, `"users":1,"message":"users reloaded"`,
			[]login{{"alice", "a2", true}, {"bob", "b", false}}},
		{"empty file refuses everyone", "# nobody\n", false, `"users":0`,
			[]login{{"alice", "a2", false}}},
	}
	for _, st := range steps {
		if st.remove {
			os.Remove(path)
		} else {
			writeUsers(t, path, st.content)
		}
		logs.Reset()
		p.poll()
		got := logs.String()
		if st.logs == "" && got != "" {
			t.Fatalf("%s: poll logged, want nothing:\n%s", st.name, got)
		}
		if !strings.Contains(got, st.logs) {
			t.Fatalf("%s: poll log lacks %s:\n%s", st.name, st.logs, got)
		}
		for _, l := range st.logins {
			if err := p.check(l.user, l.pass); (err == nil) != l.ok {
				t.Fatalf("%s: %s/%s: got %v, want ok=%v", st.name, l.user, l.pass, err, l.ok)
			}
		}
		// Entries of changed or removed users do not outlive a reload.
		users := p.users.Load().users
		for _, c := range cachedEntries(p.cache) {
			if e, ok := users[c.user]; !ok || string(e.hash) != c.hash {
				t.Fatalf("%s: the cache keeps an entry of %s with an old hash or none", st.name, c.user)
			}
		}
	}
	if n.Load() == 0 {
		t.Fatal("no bcrypt check counted")
	}
}

// TestReloadUnchangedFileIsNotRead: once a file is older than the racy
// window, polls cost a stat.
func TestReloadUnchangedFileIsNotRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	p := mustBuild(t, "htpasswd = "+writeUsers(t, path, "alice:"+hashOf(t, "a")+"\n")+"\n")
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	p.poll() // sees the new time, reads, finds the same content
	p.mu.Lock()
	before := p.htpasswd.seen
	p.mu.Unlock()
	if before.racy {
		t.Fatal("an hour-old file is marked racy")
	}
	if err := os.Chmod(path, 0); err != nil { // reading would now fail
		t.Fatal(err)
	}
	defer os.Chmod(path, 0o600)
	if changed, err := p.reload(); changed || err != nil {
		t.Fatalf("reload of an unchanged file: got %v, %v; want no read", changed, err)
	}
}

// TestReloadWaitsForSettle: a file modified in the last moment may be
// half written, here truncated before the write, and is left for later.
func TestReloadWaitsForSettle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	p := mustBuild(t, "htpasswd = "+writeUsers(t, path, "alice:"+hashOf(t, "a")+"\n")+"\n")
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	if changed, err := p.reload(); changed || err != nil {
		t.Fatalf("reload of a file truncated just now: got %v, %v; want it left for later", changed, err)
	}
	if p.check("alice", "a") != nil {
		t.Fatal("alice lost to a file being written")
	}
	writeUsers(t, path, "alice:"+hashOf(t, "a")+"\nbob:"+hashOf(t, "b")+"\n")
	settled := time.Now().Add(-time.Second)
	if err := os.Chtimes(path, settled, settled); err != nil {
		t.Fatal(err)
	}
	if changed, err := p.reload(); !changed || err != nil {
		t.Fatalf("reload of a settled file: got %v, %v; want the new users", changed, err)
	}
	if p.check("bob", "b") != nil {
		t.Fatal("bob was not added")
	}

	// An empty file past settleDelay may still be a writer stalled
	// between its truncate and its write: it waits emptySettle times as
	// long, and then it applies (no users from the file).
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		age  time.Duration
		want bool
	}{{3 * settleDelay, false}, {emptySettle*settleDelay + time.Second, true}} {
		at := time.Now().Add(-c.age)
		if err := os.Chtimes(path, at, at); err != nil {
			t.Fatal(err)
		}
		if changed, err := p.reload(); changed != c.want || err != nil {
			t.Fatalf("reload of an empty file %v old: got %v, %v; want %v", c.age, changed, err, c.want)
		}
		if (p.check("bob", "b") == nil) == c.want {
			t.Fatalf("empty file %v old: bob admitted: %v, want %v", c.age, c.want, !c.want)
		}
	}
}

// TestPoller runs the service as the server does and changes the file.
func TestPoller(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	svcs := plugins.NewServices()
	p, err := buildWith(t, "htpasswd = "+writeUsers(t, path, "alice:"+hashOf(t, "a")+"\n")+"\nreload_interval = \"100ms\"\n", nil, svcs)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs.Lookup("auth-reload:auth"); !ok {
		t.Fatal("no reload service provided")
	}
	if err := svcs.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	writeUsers(t, path, "alice:"+hashOf(t, "a")+"\nbob:"+hashOf(t, "b")+"\n")
	deadline := time.Now().Add(5 * time.Second)
	for p.check("bob", "b") != nil {
		if time.Now().After(deadline) {
			t.Fatal("bob was not added within 5s of the file change")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := svcs.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}

	// "0s" reads the file once and provides no service.
	svcs = plugins.NewServices()
	if _, err := buildWith(t, "htpasswd = "+fmt.Sprintf("%q", path)+"\nreload_interval = \"0s\"\n", nil, svcs); err != nil {
		t.Fatal(err)
	}
	if _, ok := svcs.Lookup("auth-reload:auth"); ok {
		t.Fatal(`reload_interval = "0s" provided a reload service`)
	}
}

// TestConcurrent authenticates from many goroutines while the file
// changes under them; run with -race.
func TestConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	ha, hb := hashOf(t, "a"), hashOf(t, "b")
	p := mustBuild(t, "htpasswd = "+writeUsers(t, path, "alice:"+ha+"\n")+"\nusers = { dev = \"plain:d\" }\n")
	p.settle = 0 // reload as often as possible
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			content := "alice:" + ha + "\n"
			if i%2 == 0 {
				content += "bob:" + hb + "\n"
			}
			// Rename a whole file over the old one: a write in place
			// could be read half done, since settle is off.
			os.WriteFile(path+".new", []byte(content), 0o600)
			os.Rename(path+".new", path)
			p.poll()
		}
	}()
	var failed atomic.Int64
	var workers sync.WaitGroup
	for g := range 8 {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for i := range 25 {
				s := &plugins.Session{ID: fmt.Sprint(g, "-", i), Protocol: "http"}
				if p.Authenticate(context.Background(), s, "alice", "a") != nil {
					failed.Add(1)
				}
				if p.Authenticate(context.Background(), s, "dev", "d") != nil {
					failed.Add(1)
				}
				if p.Authenticate(context.Background(), s, "alice", "wrong") == nil {
					failed.Add(1)
				}
				p.Authenticate(context.Background(), s, "bob", "b") // comes and goes
			}
		}()
	}
	workers.Wait()
	close(stop)
	wg.Wait()
	if n := failed.Load(); n != 0 {
		t.Fatalf("%d checks with a stable answer went wrong", n)
	}
}

// FuzzParseHtpasswd: no input panics, and every user accepted is one a
// client could send with a hash bcrypt can check.
func FuzzParseHtpasswd(f *testing.F) {
	f.Add([]byte("alice:$2y$04$" + strings.Repeat("a", 53) + "\n"))
	f.Add([]byte("# comment\n\nbob:$apr1$x$y\n"))
	f.Add([]byte("a:b:c\r\n:x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		users, err := parseHtpasswd("f", data)
		if err != nil {
			return
		}
		for name, e := range users {
			if checkName(name) != nil {
				t.Fatalf("accepted bad name %q", name)
			}
			if _, err := bcrypt.Cost(e.hash); err != nil {
				t.Fatalf("accepted bad hash for %q: %v", name, err)
			}
		}
	})
}

// BenchmarkCheck compares a bcrypt check at the default cost (10) with a
// cached one.
func BenchmarkCheck(b *testing.B) {
	h, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.DefaultCost)
	if err != nil {
		b.Fatal(err)
	}
	p, err := New(plugins.NewEnv("auth", zerolog.Nop(), plugins.NewServices(), func(v any) error {
		v.(*Config).Users = map[string]string{"alice": string(h)}
		return nil
	}))
	if err != nil {
		b.Fatal(err)
	}
	a := p.(*Plugin)
	b.Run("bcrypt-cost-10", func(b *testing.B) {
		for b.Loop() {
			if err := a.compare(h, []byte("secret")); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("cached", func(b *testing.B) {
		if err := a.check("alice", "secret"); err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if err := a.check("alice", "secret"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("unknown-user", func(b *testing.B) {
		for b.Loop() {
			if err := a.check("mallory", "secret"); !errors.Is(err, errUnknownUser) {
				b.Fatal(err)
			}
		}
	})
}
