//go:build linux

package test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ferry/test/testkit"
)

// authConfig is the e2e listener behind the auth plugin: users from the
// htpasswd file at path, polled every 100ms, and an inline plain-text
// user dev.
func authConfig(path string) func(addr string) string {
	return authConfigWith(path, "")
}

// authConfigWith is authConfig with more keys in the auth table.
func authConfigWith(path, keys string) func(addr string) string {
	return chainConfig([]string{"auth", "log"}, fmt.Sprintf(`[[plugin]]
name = "auth"
realm = "e2e realm"
htpasswd = %q
reload_interval = "100ms"
%s
[plugin.users]
dev = "plain:dev-pass"

[[plugin]]
name = "log"
`, path, keys))
}

// htpasswdLine is "user:hash" with a bcrypt hash at the lowest cost, in
// htpasswd -B's "$2y$" spelling.
func htpasswdLine(t *testing.T, user, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return user + ":$2y$" + string(h[4:]) + "\n"
}

// Curl exit codes for a proxy that refuses the client.
const (
	curlConnectFailed = 56 // CURLE_RECV_ERROR: CONNECT answered other than 2xx
	curlProxyError    = 97 // CURLE_PROXY: SOCKS handshake refused
)

// TestAuthCurl drives the auth plugin with curl in each protocol: no,
// wrong and right credentials, and checks the access and warn lines.
func TestAuthCurl(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	webAddr := web.Listener.Addr().String()
	url := "http://" + webAddr + "/"
	path := filepath.Join(t.TempDir(), "users")
	writeFile(t, path, "# e2e users\n"+htpasswdLine(t, "alice", "secret"))
	f := startFerry(t, authConfig(path), nil)
	httpProxy := "http://" + f.addr
	code := []string{"-o", "/dev/null", "-w", "%{http_code}"}
	connectCode := []string{"-p", "-o", "/dev/null", "-w", "%{http_connect}"}

	tests := []struct {
		name     string
		args     []string
		want     string // curl's stdout: the -w code, or the body
		wantExit int
	}{
		{"http without credentials", append([]string{"-x", httpProxy, url}, code...), "407", 0},
		{"http wrong password", append([]string{"-x", httpProxy, "-U", "alice:not-the-password", url}, code...), "407", 0},
		{"http unknown user", append([]string{"-x", httpProxy, "-U", "mallory:secret", url}, code...), "407", 0},
		{"http right", append([]string{"-x", httpProxy, "-U", "alice:secret", url}, code...), "200", 0},
		{"http inline plain user", append([]string{"-x", httpProxy, "--proxy-user", "dev:dev-pass", url}, code...), "200", 0},
		{"connect without credentials", append([]string{"-x", httpProxy, url}, connectCode...), "407", curlConnectFailed},
		{"connect wrong password", append([]string{"-x", httpProxy, "-U", "alice:not-the-password", url}, connectCode...), "407", curlConnectFailed},
		{"connect right", append([]string{"-x", httpProxy, "-U", "alice:secret", url}, connectCode...), "200", 0},
		{"socks5 right", []string{"-x", "socks5h://alice:secret@" + f.addr, url}, testkit.TargetBody, 0},
		{"socks5 wrong password", []string{"-x", "socks5h://alice:not-the-password@" + f.addr, url}, "", curlProxyError},
		{"socks5 unknown user", []string{"-x", "socks5h://mallory:secret@" + f.addr, url}, "", curlProxyError},
		{"socks5 without credentials", []string{"-x", "socks5h://" + f.addr, url}, "", curlProxyError},
		{"socks4 cannot authenticate", []string{"-x", "socks4a://" + f.addr, url}, "", curlProxyError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, exit := curlExit(t, tt.args...)
			if out != tt.want || exit != tt.wantExit {
				t.Fatalf("curl %q: got %q, exit %d; want %q, exit %d", tt.args, out, exit, tt.want, tt.wantExit)
			}
		})
	}

	// The 407 carries the challenge with the configured realm.
	hdr, _ := curlExit(t, "-x", httpProxy, "-o", "/dev/null", "-D", "-", url)
	if !strings.Contains(hdr, `Proxy-Authenticate: Basic realm="e2e realm"`) {
		t.Errorf("407 headers lack the challenge:\n%s", hdr)
	}

	// One access line per admitted request; the user is in it.
	for _, proto := range []string{"http", "connect", "socks5"} {
		l := f.waitLine(t, "access", func(l logLine) bool {
			return l.str("proto") == proto && l.str("reason") != "rejected" && l.str("user") != "dev"
		})
		if l.str("user") != "alice" || l.str("target") != webAddr {
			t.Errorf("%s access line: user %q, target %q; want alice, %s", proto, l.str("user"), l.str("target"), webAddr)
			if proto == "socks5" && l.str("user") == "" {
				t.Log("server: socks5Auth stores the user in conn.user, but newSession does not copy it into Session.User")
			}
		}
	}
	f.waitLine(t, "access", func(l logLine) bool { return l.str("user") == "dev" })
	if ls := f.lines("access", func(l logLine) bool { return l.str("user") == "mallory" }); len(ls) != 0 {
		t.Errorf("a refused user got into an access line: %v", ls)
	}
	for _, want := range []struct{ proto, user, reason string }{
		{"http", "alice", "wrong password"},
		{"http", "mallory", "unknown user"},
		{"connect", "alice", "wrong password"},
		{"socks5", "alice", "wrong password"},
		{"socks5", "mallory", "unknown user"},
	} {
		l := f.waitLine(t, "authentication failed", func(l logLine) bool {
			return l.str("proto") == want.proto && l.str("user") == want.user && l.str("reason") == want.reason
		})
		if l.str("level") != "warn" || !strings.HasPrefix(l.str("client"), "127.0.0.1:") {
			t.Errorf("refusal line: got %v, want level warn and the client address", l)
		}
	}
	if strings.Contains(f.stderr.String(), "not-the-password") {
		t.Errorf("ferry logged a password:\n%s", f.stderr.String())
	}
}

// TestAuthReload changes the htpasswd file under a running ferry: added
// users, changed passwords and removed users take effect without a
// restart, and a bad file keeps the users.
func TestAuthReload(t *testing.T) {
	t.Parallel()
	needCurl(t)
	web := testkit.HTTPTarget(t)
	url := "http://" + web.Listener.Addr().String() + "/"
	path := filepath.Join(t.TempDir(), "users")
	alice := htpasswdLine(t, "alice", "secret")
	writeFile(t, path, alice)
	// The polls below send wrong passwords from one address until each
	// change lands: more than the default max_failures lets through.
	f := startFerry(t, authConfigWith(path, "max_failures = 0"), nil)

	status := func(user, pass string) string {
		out, _ := curlExit(t, "-x", "http://"+f.addr, "-U", user+":"+pass, "-o", "/dev/null", "-w", "%{http_code}", url)
		return out
	}
	// eventually waits, bounded, for user:pass to get want.
	eventually := func(step, user, pass, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := status(user, pass)
			if got == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s got %s, want %s within 10s of the file change", step, user, got, want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	if got := status("bob", "bob-pass"); got != "407" {
		t.Fatalf("bob before he is added: got %s, want 407", got)
	}
	start := time.Now()
	writeFile(t, path, alice+htpasswdLine(t, "bob", "bob-pass"))
	eventually("add bob", "bob", "bob-pass", "200")
	t.Logf("a new user was admitted %v after the file changed", time.Since(start).Round(time.Millisecond))
	if out, exit := curlExit(t, "-x", "socks5h://bob:bob-pass@"+f.addr, url); out != testkit.TargetBody || exit != 0 {
		t.Fatalf("bob over socks5: got %q, exit %d", out, exit)
	}

	writeFile(t, path, htpasswdLine(t, "alice", "secret2")+htpasswdLine(t, "bob", "bob-pass"))
	eventually("change alice's password", "alice", "secret2", "200")
	if got := status("alice", "secret"); got != "407" {
		t.Fatalf("alice's old password after the change: got %s, want 407", got)
	}

	// From here the file is replaced by a rename, as tools that write
	// a new file and move it over the old one do; above it was written
	// in place.
	replaceFile(t, path, []byte(htpasswdLine(t, "alice", "secret2")))
	eventually("remove bob", "bob", "bob-pass", "407")

	replaceFile(t, path, []byte(htpasswdLine(t, "alice", "secret2")+"carol:$apr1$salt$0123456789abcdefghijkl\n"))
	l := f.waitLine(t, "reload users: keeping the current ones", nil)
	if want := path + ":2: user carol: MD5 ($apr1$) hashes are not supported"; !strings.Contains(l.str("error"), want) || l.str("level") != "error" {
		t.Fatalf("bad file: got %v, want an error line containing %q", l, want)
	}
	if got := status("alice", "secret2"); got != "200" {
		t.Fatalf("alice after a bad file: got %s, want 200 (the old users stay)", got)
	}

	replaceFile(t, path, []byte(htpasswdLine(t, "carol", "carol-pass")))
	eventually("fixed file", "carol", "carol-pass", "200")
	eventually("fixed file", "alice", "secret2", "407")
}
