package upstream

import (
	"errors"
	"strings"
	"testing"
	"time"

	"ferry/plugins"
)

func TestChains(t *testing.T) {
	const greeting = "target says hi\n"
	type built struct {
		d           Dialer
		first, next string // upstream names
	}
	// httpViaSOCKS: socks "s1" then http "h2"; socksViaHTTP: http "h1" then
	// socks "s2". firstAddr and nextAddr override the proxies' addresses.
	httpViaSOCKS := func(t *testing.T, firstAddr, nextAddr string) built {
		if firstAddr == "" {
			firstAddr = startSOCKS(t, &socksFake{relay: true}).addr()
		}
		if nextAddr == "" {
			nextAddr = startHTTP(t, &httpFake{greeting: greeting}).addr()
		}
		s1, err := SOCKS5("s1", firstAddr, nil, Direct())
		if err != nil {
			t.Fatal(err)
		}
		return built{HTTPConnect("h2", nextAddr, "", "", nil, s1), "s1", "h2"}
	}
	socksViaHTTP := func(t *testing.T, firstAddr, nextAddr string) built {
		if firstAddr == "" {
			firstAddr = startHTTP(t, &httpFake{relay: true}).addr()
		}
		if nextAddr == "" {
			nextAddr = startSOCKS(t, &socksFake{greeting: greeting}).addr()
		}
		s2, err := SOCKS5("s2", nextAddr, nil, HTTPConnect("h1", firstAddr, "", "", nil, Direct()))
		if err != nil {
			t.Fatal(err)
		}
		return built{s2, "h1", "s2"}
	}
	for _, kind := range []struct {
		name  string
		build func(t *testing.T, firstAddr, nextAddr string) built
		// code when the first hop cannot reach the second (closed port):
		// SOCKS answers 0x05, HTTP 502.
		unreachable plugins.Code
	}{
		{"http via socks", httpViaSOCKS, plugins.CodeConnRefused},
		{"socks via http", socksViaHTTP, plugins.CodeGeneral},
	} {
		t.Run(kind.name, func(t *testing.T) {
			t.Run("works", func(t *testing.T) {
				b := kind.build(t, "", "")
				ctx, info := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				mustTCPConn(t, c)
				if got := readN(t, c, len(greeting)); got != greeting {
					t.Fatalf("greeting %q", got)
				}
				echoCheck(t, c)
				if want := b.first + ">" + b.next; info.Path() != want {
					t.Fatalf("Path = %q, want %q", info.Path(), want)
				}
			})
			t.Run("first hop down", func(t *testing.T) {
				b := kind.build(t, closedAddr(t), "")
				ctx, info := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, b.first, StageConnect, plugins.CodeConnRefused)
				if strings.Contains(err.Error(), "upstream "+b.next) {
					t.Fatalf("error %q blames %s too", err, b.next)
				}
				if info.Path() != "" {
					t.Fatalf("Path = %q", info.Path())
				}
			})
			t.Run("first hop cannot reach the second", func(t *testing.T) {
				b := kind.build(t, "", closedAddr(t))
				ctx, _ := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				ue := upstreamErr(t, err, b.next, StageConnect, kind.unreachable)
				if !memberFailed(err) {
					t.Fatal("an unreachable second hop does not count as the member failing")
				}
				// The first hop's answer is kept as the cause.
				var inner *Error
				if !errors.As(ue.Err, &inner) || inner.Upstream != b.first || inner.Stage != StageTarget {
					t.Fatalf("cause %v is not the first hop's target error", ue.Err)
				}
			})
			t.Run("second hop refuses the target", func(t *testing.T) {
				var b built
				if kind.name == "http via socks" {
					b = kind.build(t, "", startHTTP(t, &httpFake{status: 403}).addr())
				} else {
					b = kind.build(t, "", startSOCKS(t, &socksFake{reply: 0x02}).addr())
				}
				ctx, _ := dialCtx(t, 10*time.Second)
				c, err := b.d.DialContext(ctx, "tcp", "never-resolves.invalid:25")
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				upstreamErr(t, err, b.next, StageTarget, plugins.CodeForbidden)
			})
		})
	}
}
