//go:build linux

package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ferry/test/testkit"
)

// socks5Auth runs a SOCKS5 greeting offering username/password and the
// RFC 1929 exchange, and returns the server's auth reply and what the
// server did next (EOF, or more bytes).
func socks5Auth(t *testing.T, addr, user, pass string) (reply []byte, after string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte{5, 1, 2})
	method := make([]byte, 2)
	if _, err := io.ReadFull(c, method); err != nil || method[1] != 2 {
		t.Fatalf("method choice %v, %v; want username/password", method, err)
	}
	msg := append([]byte{1, byte(len(user))}, user...)
	msg = append(append(msg, byte(len(pass))), pass...)
	c.Write(msg)
	reply = make([]byte, 2)
	if _, err := io.ReadFull(c, reply); err != nil {
		t.Fatalf("auth reply: %v", err)
	}
	if reply[1] == 0 {
		return reply, "" // accepted: the server waits for the request
	}
	n, err := c.Read(make([]byte, 1))
	return reply, fmt.Sprintf("%d bytes, %v", n, err)
}

// The SOCKS5 handshake answers an unknown user exactly as a wrong
// password: a client cannot probe which users exist.
func TestSOCKS5AuthDoesNotRevealUsers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(htpasswdLine(t, "alice", "secret")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f := startFerry(t, authConfig(path), nil)
	wrongPass, afterWrong := socks5Auth(t, f.addr, "alice", "not-it")
	unknown, afterUnknown := socks5Auth(t, f.addr, "mallory", "not-it")
	if string(wrongPass) != string(unknown) || afterWrong != afterUnknown {
		t.Fatalf("wrong password: %x then %s; unknown user: %x then %s; want the same", wrongPass, afterWrong, unknown, afterUnknown)
	}
	if wrongPass[1] == 0 {
		t.Fatalf("refusal reported success: %x", wrongPass)
	}
	if ok, _ := socks5Auth(t, f.addr, "alice", "secret"); ok[1] != 0 {
		t.Fatalf("right password refused: %x", ok)
	}
}

// Passwords (of clients, of upstream proxies) appear in no log line and
// not in /channels.
func TestCredentialsNeverLogged(t *testing.T) {
	dante, _ := startDante(t, true)
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(path, []byte(htpasswdLine(t, "alice", "client-secret-1")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	target := newEchoTarget(t)
	good := "socks5://" + danteUser + ":" + dantePass + "@" + dante
	bad := "socks5://" + danteUser + ":upstream-wrong-2@" + dante
	f := startFerry(t, func(addr string) string {
		return authConfig(path)(addr) +
			upstreamTable("good", good) + upstreamTable("bad", bad) +
			"[[route]]\nport = [1]\nupstream = \"bad\"\n" + routeAll("good") +
			fmt.Sprintf("\n[admin]\nlisten = %q\n", adminAddr)
	}, nil)

	// An open tunnel through the parent that has a password, with a
	// client that sent one.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := testkit.DialSOCKS5Auth(ctx, f.addr, target.Addr, "alice", "client-secret-1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := echo(c, "hello\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + adminAddr + "/channels")
	if err != nil {
		t.Fatal(err)
	}
	channels, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(channels), "alice") {
		t.Fatalf("/channels does not show the tunnel: %s", channels)
	}
	// Failures that log: a wrong client password, a parent refusing ours.
	socks5Auth(t, f.addr, "alice", "client-wrong-3")
	curlExit(t, "-x", "socks5h://alice:client-secret-1@"+f.addr, "http://127.0.0.1:1/")
	f.waitLine(t, "upstream auth failed", nil)
	f.waitLine(t, "authentication failed", nil)

	for _, secret := range []string{dantePass, "upstream-wrong-2", "client-secret-1", "client-wrong-3"} {
		if strings.Contains(f.stderr.String(), secret) {
			t.Errorf("ferry's log holds the password %q:\n%s", secret, f.stderr.String())
		}
		if strings.Contains(string(channels), secret) {
			t.Errorf("/channels holds the password %q: %s", secret, channels)
		}
	}
}

// A tunnel to ferry's own listener would loop: refused with the
// protocol's "not allowed".
func TestRefusesTunnelToItself(t *testing.T) {
	f := startFerry(t, withJSON(""), nil)
	_, port, _ := net.SplitHostPort(f.addr)
	if got := ask(t, f.addr, f.addr, askSOCKS5); got != "REP 0x02" {
		t.Errorf("SOCKS5 %s: %s, want REP 0x02", f.addr, got)
	}
	for _, target := range []string{f.addr, "localhost:" + port} {
		if got := ask(t, f.addr, target, askCONNECT); got != "403" {
			t.Errorf("CONNECT %s: %s, want 403", target, got)
		}
	}
	l := f.waitLine(t, "access", func(l logLine) bool { return l.str("target") == f.addr })
	if l.str("reason") != "rejected" || !strings.Contains(l.str("error"), "loop") {
		t.Errorf("access line: %v; want reason rejected and an error about a loop", l)
	}
}

// `ferry check` warns about a listener anyone can use.
func TestCheckWarnsOpenProxy(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	open := write("open.toml", "[[listener]]\nname = \"wide\"\nlisten = \"0.0.0.0:0\"\n")
	guarded := write("acl.toml", `[[listener]]
name = "wide"
listen = "0.0.0.0:0"
plugins = ["office"]
[[plugin]]
name = "office"
type = "acl"
default = "deny"
[[plugin.rule]]
action = "allow"
client = ["10.0.0.0/8"]
`)
	local := write("local.toml", "[[listener]]\nlisten = \"127.0.0.1:0\"\n")
	for _, tt := range []struct {
		file string
		warn bool
	}{{open, true}, {guarded, false}, {local, false}} {
		r := runFerry(t, dir, "check", "-c", tt.file)
		if r.code != 0 {
			t.Fatalf("check %s: exit %d: %s%s", tt.file, r.code, r.stdout, r.stderr)
		}
		if got := strings.Contains(r.stdout, "OPEN PROXY"); got != tt.warn {
			t.Errorf("check %s: open-proxy warning %v, want %v:\n%s", filepath.Base(tt.file), got, tt.warn, r.stdout)
		}
	}
}
