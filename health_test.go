package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"ferry/config"
	"ferry/server"
)

// startFerry runs an in-process ferry server with one listener on a free
// loopback port; listener holds the [[listener]] keys other than listen,
// rest any [[plugin]] tables. It returns the listener's address.
func startFerry(t *testing.T, listener, rest string) string {
	t.Helper()
	src := fmt.Sprintf("[[listener]]\nname = \"health\"\nlisten = \"127.0.0.1:0\"\n%s\n%s", listener, rest)
	cfg, err := config.Parse("health_test.toml", []byte(src))
	if err != nil {
		t.Fatalf("config:\n%v\n%s", err, src)
	}
	srv, err := server.New(cfg, zerolog.Nop())
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	if err := srv.Start(); err != nil {
		srv.Close()
		t.Fatalf("start: %v", err)
	}
	t.Cleanup(func() { srv.Shutdown(time.Second) })
	return srv.Addrs()[0].String()
}

// fakeServer accepts connections on a loopback port and hands each to
// serve, which reads the probe and may answer.
func fakeServer(t *testing.T, serve func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// readN reads n bytes of the probe, so that the answer is not lost to a
// reset for unread input.
func readN(c net.Conn, n int) []byte {
	b := make([]byte, n)
	io.ReadFull(c, b)
	return b
}

// readHead reads the rest of an HTTP request head.
func readHead(c net.Conn) {
	var head []byte
	b := make([]byte, 1)
	for !bytes.HasSuffix(head, []byte("\r\n\r\n")) {
		if _, err := c.Read(b); err != nil {
			return
		}
		head = append(head, b[0])
	}
}

func TestHealthAgainstFerry(t *testing.T) {
	t.Parallel()
	const authPlugin = `[[plugin]]
name = "auth"
[plugin.users]
alice = "$2y$10$yJ66qH3E2Vo4Yra546J8rebhvDa7N2pLyuBs0xWAX/aEa8aVDCDle"
`
	tests := []struct {
		name     string
		listener string
		rest     string
		want     string // prefix of the answer; empty: the check fails
		wantErr  string // substring of the error
	}{
		{name: "all protocols", want: "socks5 (method 0x00)"},
		{name: "socks5 with password", listener: `protocols = ["socks5"]` + "\n" + `plugins = ["auth"]`, rest: authPlugin, want: "socks5 (method 0xff)"},
		{name: "http only", listener: `protocols = ["http"]`, want: "http (HTTP/1.1 400 Bad Request)"},
		{name: "http with password", listener: `protocols = ["http"]` + "\n" + `plugins = ["auth"]`, rest: authPlugin, want: "http (HTTP/1.1 400 Bad Request)"},
		{name: "socks4 only", listener: `protocols = ["socks4"]`, wantErr: "does the listener speak socks5 or http"},
		{name: "proxy protocol required", listener: `proxy_protocol = "required"` + "\n" + `trusted_proxies = ["192.0.2.1"]`, wantErr: "closed the connection without answering"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			addr := startFerry(t, tt.listener, tt.rest)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := checkHealth(ctx, addr)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("checkHealth: got %q, want an error", got)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("checkHealth: got error %q, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("checkHealth: %v", err)
			}
			if got != tt.want {
				t.Fatalf("checkHealth: got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHealthFakeServers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		serve   func(c net.Conn) // nil: a dead port
		want    string
		wantErr string
	}{
		{
			name: "socks5 responder",
			serve: func(c net.Conn) {
				if g := readN(c, 3); !bytes.Equal(g, []byte{5, 1, 0}) {
					return
				}
				c.Write([]byte{5, 0})
			},
			want: "socks5 (method 0x00)",
		},
		{
			name: "http responder",
			serve: func(c net.Conn) {
				if readN(c, 1)[0] == 5 {
					return // no SOCKS5 here: close
				}
				readHead(c)
				io.WriteString(c, "HTTP/1.0 503 Service Unavailable\r\n\r\n")
			},
			want: "http (HTTP/1.0 503 Service Unavailable)",
		},
		{
			name:    "wrong protocol",
			serve:   func(c net.Conn) { readN(c, 3); io.WriteString(c, "SSH-2.0-OpenSSH_9.2\r\n") },
			wantErr: "is not SOCKS5",
		},
		{
			name: "not an http status line",
			serve: func(c net.Conn) {
				if readN(c, 1)[0] != 5 {
					readHead(c)
					io.WriteString(c, "220 smtp.example ESMTP\r\n")
				}
			},
			wantErr: "is not an HTTP status line",
		},
		{
			name:    "silent",
			serve:   func(c net.Conn) { readN(c, 3); time.Sleep(2 * time.Second) },
			wantErr: "no answer before the timeout",
		},
		{
			name:    "closes at once",
			serve:   func(c net.Conn) {},
			wantErr: "closed the connection without answering",
		},
		{
			name:    "dead port",
			wantErr: "connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var addr string
			if tt.serve == nil {
				addr = deadAddr(t)
			} else {
				addr = fakeServer(t, tt.serve)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			start := time.Now()
			got, err := checkHealth(ctx, addr)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("checkHealth took %v with a 500ms timeout", took)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("checkHealth: %v", err)
				}
				if got != tt.want {
					t.Fatalf("checkHealth: got %q, want %q", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("checkHealth: got %q, want an error containing %q", got, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("checkHealth: got error %q, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

// runHealth runs `ferry health args...` through the command as the CLI
// registers it and returns stdout, the error message and the exit code.
func runHealth(t *testing.T, args ...string) (stdout, msg string, code int) {
	t.Helper()
	var out bytes.Buffer
	app := &cli.App{
		Name:           "ferry",
		Writer:         io.Discard,
		ErrWriter:      io.Discard,
		ExitErrHandler: func(*cli.Context, error) {},
		Commands:       []*cli.Command{healthCommand(&out)},
	}
	err := app.Run(append([]string{"ferry", "health"}, args...))
	if err == nil {
		return out.String(), "", 0
	}
	var ec cli.ExitCoder
	if !errors.As(err, &ec) {
		t.Fatalf("ferry health %q: error %v is not an exit code", args, err)
	}
	return out.String(), ec.Error(), ec.ExitCode()
}

// TestHealthCommand is not parallel: urfave/cli writes package-level
// flags (help, version) when an App runs.
func TestHealthCommand(t *testing.T) {
	live := startFerry(t, "", "")
	dead := deadAddr(t)
	closes := fakeServer(t, func(net.Conn) {})
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // substring of stdout (exit 0) or of the message
	}{
		{name: "alive", args: []string{"--addr", live}, wantOut: "ok: " + live + " answers socks5 (method 0x00)\n"},
		{name: "alive short flags", args: []string{"-a", live, "-t", "5s"}, wantOut: "answers socks5"},
		{name: "dead port", args: []string{"--addr", dead}, wantCode: 1, wantOut: "unhealthy: " + dead + ": socks5 greeting: dial tcp " + dead + ": connect: connection refused"},
		{name: "bad address", args: []string{"--addr", "127.0.0.1"}, wantCode: 1, wantOut: "missing port"},
		{name: "zero timeout", args: []string{"--addr", live, "--timeout", "0s"}, wantCode: 1, wantOut: "want a positive duration"},
		{name: "stray argument", args: []string{live}, wantCode: 1, wantOut: "use --addr"},
		{name: "live", args: []string{"--live", "--addr", live}, wantOut: "answers socks5"},
		{name: "closes unanswered", args: []string{"--addr", closes}, wantCode: 1, wantOut: "closed the connection without answering"},
		{name: "closes unanswered, live", args: []string{"--live", "--addr", closes}, wantOut: "ok: " + closes + " accepts connections but closes them unanswered"},
		{name: "dead port, live", args: []string{"--live", "--addr", dead}, wantCode: 1, wantOut: "connection refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, msg, code := runHealth(t, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("ferry health %q: got exit %d (%q), want %d", tt.args, code, msg, tt.wantCode)
			}
			got := out
			if code != 0 {
				got = msg
			}
			if !strings.Contains(got, tt.wantOut) {
				t.Fatalf("ferry health %q: got %q, want it to contain %q", tt.args, got, tt.wantOut)
			}
		})
	}
}

// TestHealthAtMaxConnections: a full listener closes new connections at
// once. The check fails with errNoAnswer (what --live lets pass), and
// passes again once a connection ends.
func TestHealthAtMaxConnections(t *testing.T) {
	t.Parallel()
	addr := startFerry(t, "max_connections = 1\nhandshake_timeout = \"1m\"", "")
	held, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()

	// The accept loop counts the held connection soon after the dial.
	check := func(want func(error) bool) error {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := checkHealth(ctx, addr)
			cancel()
			if want(err) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	full := func(err error) bool { return errors.Is(err, errNoAnswer) }
	if err := check(full); !full(err) {
		t.Fatalf("checkHealth at max_connections: got %v, want an error wrapping errNoAnswer", err)
	}
	held.Close()
	if err := check(func(err error) bool { return err == nil }); err != nil {
		t.Fatalf("checkHealth after the held connection closed: %v", err)
	}
}
