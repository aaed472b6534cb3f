package upstream

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/proxy"

	"ferry/plugins"
)

func TestSOCKS5Targets(t *testing.T) {
	tests := []struct {
		name   string
		target string
		want   socksReq
	}{
		{"name sent unresolved", "never-resolves.invalid:443", socksReq{atyp: 3, host: "never-resolves.invalid", port: 443}},
		{"IPv4 literal", "192.0.2.7:8080", socksReq{atyp: 1, host: "192.0.2.7", port: 8080}},
		{"IPv6 literal", "[2001:db8::1]:80", socksReq{atyp: 4, host: "2001:db8::1", port: 80}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSOCKS(t, &socksFake{greeting: "220 hello\r\n"})
			d, err := SOCKS5("socks-up", srv.addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", tt.target)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustTCPConn(t, c)
			if got := readN(t, c, len("220 hello\r\n")); got != "220 hello\r\n" {
				t.Fatalf("greeting %q", got)
			}
			echoCheck(t, c)
			if reqs := srv.requests(); len(reqs) != 1 || reqs[0] != tt.want {
				t.Fatalf("proxy got %+v, want [%+v]", reqs, tt.want)
			}
			if info.Path() != "socks-up" {
				t.Fatalf("Path = %q", info.Path())
			}
		})
	}
}

func TestSOCKS5Auth(t *testing.T) {
	tests := []struct {
		name             string
		srvUser, srvPass string
		auth             *proxy.Auth
		ok               bool
	}{
		{"accepted", "alice", "s3cret", &proxy.Auth{User: "alice", Password: "s3cret"}, true},
		{"wrong password", "alice", "s3cret", &proxy.Auth{User: "alice", Password: "nope"}, false},
		{"wrong user", "alice", "s3cret", &proxy.Auth{User: "bob", Password: "s3cret"}, false},
		{"no credentials but required", "alice", "s3cret", nil, false},
		{"credentials not needed", "", "", &proxy.Auth{User: "alice", Password: "s3cret"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startSOCKS(t, &socksFake{user: tt.srvUser, pass: tt.srvPass})
			d, err := SOCKS5("socks-auth", srv.addr(), tt.auth, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:80")
			if tt.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				mustTCPConn(t, c)
				echoCheck(t, c)
				return
			}
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "socks-auth", StageAuth, plugins.CodeGeneral)
			if strings.Contains(err.Error(), "socks connect") {
				t.Fatalf("error keeps x/net's OpError text: %v", err)
			}
			if tt.auth != nil && strings.Contains(err.Error(), tt.auth.Password) {
				t.Fatalf("error leaks the password: %v", err)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
			if len(srv.requests()) != 0 {
				t.Fatal("request sent after failed auth")
			}
		})
	}
}

func TestSOCKS5Replies(t *testing.T) {
	if len(socksReplies) != 8 {
		t.Fatalf("socksReplies has %d entries, want the 8 RFC 1928 failure codes", len(socksReplies))
	}
	for i, r := range socksReplies {
		rep := byte(i + 1)
		t.Run(fmt.Sprintf("0x%02x %s", rep, r.text), func(t *testing.T) {
			srv := startSOCKS(t, &socksFake{reply: rep})
			d, err := SOCKS5("socks-rep", srv.addr(), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:80")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "socks-rep", StageTarget, r.code)
			if !strings.Contains(err.Error(), r.text) {
				t.Fatalf("error %q lacks %q", err, r.text)
			}
			if memberFailed(err) {
				t.Fatal("a target failure counts as the member failing")
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
	// The codes the RFC gives (and x/net names) map as ferry's clients
	// expect.
	want := map[byte]plugins.Code{1: plugins.CodeGeneral, 2: plugins.CodeForbidden, 3: plugins.CodeNetUnreachable,
		4: plugins.CodeHostUnreachable, 5: plugins.CodeConnRefused, 6: plugins.CodeTimeout, 7: plugins.CodeGeneral, 8: plugins.CodeGeneral}
	for i, r := range socksReplies {
		if want[byte(i+1)] != r.code {
			t.Errorf("reply 0x%02x (%s) maps to %v, want %v", i+1, r.text, r.code, want[byte(i+1)])
		}
	}
}

func TestSOCKS5UnassignedReply(t *testing.T) {
	srv := startSOCKS(t, &socksFake{reply: 0x09})
	d, err := SOCKS5("socks-odd", srv.addr(), nil, Direct())
	if err != nil {
		t.Fatal(err)
	}
	ctx, _ := dialCtx(t, 10*time.Second)
	c, err := d.DialContext(ctx, "tcp", "example.test:80")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	var ue *Error
	if !errors.As(err, &ue) || ue.Upstream != "socks-odd" {
		t.Fatalf("error %v does not blame socks-odd", err)
	}
}

func TestSOCKS5Failures(t *testing.T) {
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		timeout time.Duration
		stage   Stage
		code    plugins.Code
	}{
		{"proxy down", closedAddr, 10 * time.Second, StageConnect, plugins.CodeConnRefused},
		{"proxy silent", func(t *testing.T) string { return silentServer(t).addr() }, 500 * time.Millisecond, StageHandshake, plugins.CodeTimeout},
		{"proxy hangs up", func(t *testing.T) string { return hangupServer(t).addr() }, 10 * time.Second, StageHandshake, plugins.CodeGeneral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := SOCKS5("socks-x", tt.addr(t), nil, Direct())
			if err != nil {
				t.Fatal(err)
			}
			ctx, info := dialCtx(t, tt.timeout)
			start := time.Now()
			c, err := d.DialContext(ctx, "tcp", "example.test:80")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "socks-x", tt.stage, tt.code)
			if el := time.Since(start); el > tt.timeout+5*time.Second {
				t.Fatalf("dial took %v, deadline was %v", el, tt.timeout)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
}
