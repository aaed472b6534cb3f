package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"ferry/plugins"
)

func TestHTTPConnectTunnel(t *testing.T) {
	const greeting = "SSH-2.0-OpenSSH_9.6\r\n"
	tests := []struct {
		name string
		f    httpFake
	}{
		{"plain", httpFake{}},
		{"greeting in the head's write", httpFake{greeting: greeting}},
		{"head split in many writes", httpFake{splitHead: true}},
		{"head split, greeting with its last byte", httpFake{splitHead: true, greeting: greeting}},
		{"201 is success too", httpFake{status: 201, greeting: greeting}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			srv := startHTTP(t, &f)
			d := HTTPConnect("http-up", srv.addr(), "", "", nil, Direct())
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "never-resolves.invalid:22")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustTCPConn(t, c)
			if f.greeting != "" {
				if got := readN(t, c, len(f.greeting)); got != f.greeting {
					t.Fatalf("greeting %q, want %q", got, f.greeting)
				}
			}
			echoCheck(t, c)
			reqs := srv.requests()
			if len(reqs) != 1 || reqs[0].method != "CONNECT" || reqs[0].uri != "never-resolves.invalid:22" ||
				reqs[0].host != "never-resolves.invalid:22" {
				t.Fatalf("proxy got %+v", reqs)
			}
			if info.Path() != "http-up" {
				t.Fatalf("Path = %q", info.Path())
			}
		})
	}
}

func TestHTTPConnectAuthHeader(t *testing.T) {
	tests := []struct {
		name, user, pass string
		want             []string
	}{
		{"user and password", "alice", "s3cret", []string{basic("alice", "s3cret")}},
		{"user only", "alice", "", []string{basic("alice", "")}},
		{"no user", "", "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startHTTP(t, &httpFake{})
			d := HTTPConnect("http-auth", srv.addr(), tt.user, tt.pass, nil, Direct())
			ctx, _ := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:443")
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests", len(reqs))
			}
			if fmt.Sprint(reqs[0].auth) != fmt.Sprint(tt.want) {
				t.Fatalf("Proxy-Authorization %q, want %q", reqs[0].auth, tt.want)
			}
		})
	}
}

func TestHTTPConnectStatus(t *testing.T) {
	tests := []struct {
		name       string
		f          httpFake
		user, pass string
		stage      Stage
		code       plugins.Code
		text       string
	}{
		{"407 without credentials", httpFake{user: "alice", pass: "s3cret"}, "", "", StageAuth, plugins.CodeGeneral, "put user:password"},
		{"407 with wrong credentials", httpFake{user: "alice", pass: "s3cret"}, "alice", "nope", StageAuth, plugins.CodeGeneral, "407"},
		{"403", httpFake{status: 403}, "", "", StageTarget, plugins.CodeForbidden, "403 Forbidden"},
		{"504", httpFake{status: 504}, "", "", StageTarget, plugins.CodeTimeout, "504"},
		{"502", httpFake{status: 502}, "", "", StageTarget, plugins.CodeGeneral, "502"},
		{"503", httpFake{status: 503}, "", "", StageTarget, plugins.CodeGeneral, "503"},
		{"404", httpFake{status: 404}, "", "", StageTarget, plugins.CodeGeneral, "404"},
		{"500 split head", httpFake{status: 500, splitHead: true}, "", "", StageTarget, plugins.CodeGeneral, "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			srv := startHTTP(t, &f)
			d := HTTPConnect("http-st", srv.addr(), tt.user, tt.pass, nil, Direct())
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:443")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "http-st", tt.stage, tt.code)
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q lacks %q", err, tt.text)
			}
			if tt.pass != "" && strings.Contains(err.Error(), tt.pass) {
				t.Fatalf("error leaks the password: %v", err)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
}

func TestHTTPConnectFailures(t *testing.T) {
	garbage := func(t *testing.T) string {
		return startFake(t, func(_ *fakeServer, c net.Conn, _ int32) {
			bufio.NewReader(c).ReadString('\n')
			io.WriteString(c, "SSH-2.0-not-a-proxy\r\n\r\n")
			io.Copy(io.Discard, c)
		}).addr()
	}
	tests := []struct {
		name    string
		addr    func(t *testing.T) string
		timeout time.Duration
		stage   Stage
		code    plugins.Code
		text    string
	}{
		{"proxy down", closedAddr, 10 * time.Second, StageConnect, plugins.CodeConnRefused, "refused"},
		{"proxy silent", func(t *testing.T) string { return silentServer(t).addr() }, 500 * time.Millisecond, StageHandshake, plugins.CodeTimeout, "CONNECT"},
		{"proxy hangs up", func(t *testing.T) string { return hangupServer(t).addr() }, 10 * time.Second, StageHandshake, plugins.CodeGeneral, "CONNECT"},
		{"not HTTP", garbage, 10 * time.Second, StageHandshake, plugins.CodeGeneral, "malformed HTTP"},
		{"oversized head", func(t *testing.T) string { return startHTTP(t, &httpFake{oversize: true}).addr() },
			10 * time.Second, StageHandshake, plugins.CodeGeneral, "response head over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := HTTPConnect("http-x", tt.addr(t), "", "", nil, Direct())
			ctx, info := dialCtx(t, tt.timeout)
			start := time.Now()
			c, err := d.DialContext(ctx, "tcp", "example.test:443")
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			upstreamErr(t, err, "http-x", tt.stage, tt.code)
			if !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("error %q lacks %q", err, tt.text)
			}
			if el := time.Since(start); el > tt.timeout+5*time.Second {
				t.Fatalf("dial took %v, deadline was %v", el, tt.timeout)
			}
			if info.Path() != "" {
				t.Fatalf("failed dial added hop: %q", info.Path())
			}
		})
	}
}

func TestHTTPConnectCanceled(t *testing.T) {
	srv := silentServer(t)
	d := HTTPConnect("http-c", srv.addr(), "", "", nil, Direct())
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	c, err := d.DialContext(ctx, "tcp", "example.test:443")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	upstreamErr(t, err, "http-c", StageHandshake, plugins.CodeGeneral)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v does not say the dial was canceled", err)
	}
}

func TestHTTPConnectNetwork(t *testing.T) {
	srv := startHTTP(t, &httpFake{})
	d := HTTPConnect("http-n", srv.addr(), "", "", nil, Direct())
	for _, network := range []string{"udp", "unix"} {
		c, err := d.DialContext(context.Background(), network, "example.test:53")
		if err == nil {
			c.Close()
			t.Fatalf("%s dial succeeded", network)
		}
		if !strings.Contains(err.Error(), "http-n") {
			t.Fatalf("error %q does not name the upstream", err)
		}
	}
	if n := srv.accepts.Load(); n != 0 {
		t.Fatalf("proxy dialed %d times for non-tcp networks", n)
	}
	for _, network := range []string{"tcp4", "tcp6"} {
		c, err := d.DialContext(context.Background(), network, "example.test:443")
		if err != nil {
			t.Fatalf("%s: %v", network, err)
		}
		c.Close()
	}
}

func TestHTTPSConnect(t *testing.T) {
	serverTLS, roots := testPKI(t)
	const greeting = "220 smtp.example ESMTP\r\n"
	tests := []struct {
		name     string
		f        httpFake
		client   *tls.Config
		wantType string // %T of the conn, "" for an error
		stage    Stage
		code     plugins.Code
	}{
		{"trusted", httpFake{}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "*tls.Conn", "", 0},
		{"trusted, greeting after head", httpFake{greeting: greeting}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "*netx.PrefixConn", "", 0},
		{"trusted, head split", httpFake{splitHead: true, greeting: greeting}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", "", 0},
		{"untrusted CA", httpFake{}, &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "proxy.test"}, "", StageHandshake, plugins.CodeGeneral},
		{"wrong name", httpFake{}, &tls.Config{RootCAs: roots, ServerName: "other.test"}, "", StageHandshake, plugins.CodeGeneral},
		{"407", httpFake{user: "alice", pass: "x"}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", StageAuth, plugins.CodeGeneral},
		{"403", httpFake{status: 403}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", StageTarget, plugins.CodeForbidden},
		{"oversized head", httpFake{oversize: true}, &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, "", StageHandshake, plugins.CodeGeneral},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.f
			f.tls = serverTLS
			srv := startHTTP(t, &f)
			d := HTTPConnect("https-up", srv.addr(), "", "", tt.client, Direct())
			ctx, info := dialCtx(t, 10*time.Second)
			c, err := d.DialContext(ctx, "tcp", "example.test:25")
			if tt.stage != "" {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, "https-up", tt.stage, tt.code)
				if tt.stage == StageHandshake && tt.name != "oversized head" && !strings.Contains(err.Error(), "certificate") {
					t.Fatalf("error %q does not mention the certificate", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if tt.wantType != "" && fmt.Sprintf("%T", c) != tt.wantType {
				t.Fatalf("conn is %T, want %s", c, tt.wantType)
			}
			if f.greeting != "" {
				if got := readN(t, c, len(f.greeting)); got != f.greeting {
					t.Fatalf("greeting %q, want %q", got, f.greeting)
				}
			}
			echoCheck(t, c)
			if info.Path() != "https-up" {
				t.Fatalf("Path = %q", info.Path())
			}
		})
	}
}

func TestHTTPSConnectSilent(t *testing.T) {
	_, roots := testPKI(t)
	srv := silentServer(t)
	d := HTTPConnect("https-silent", srv.addr(), "", "", &tls.Config{RootCAs: roots, ServerName: "proxy.test"}, Direct())
	ctx, _ := dialCtx(t, 500*time.Millisecond)
	c, err := d.DialContext(ctx, "tcp", "example.test:443")
	if err == nil {
		c.Close()
		t.Fatal("dial succeeded")
	}
	upstreamErr(t, err, "https-silent", StageHandshake, plugins.CodeTimeout)
}
