package relay

import (
	"context"
	"io"
	"net"
	"testing"

	"ferry/plugins"
)

// passthrough is a no-op data hook both ways: a channel with it copies
// in user space.
type passthrough struct{}

func (passthrough) Name() string                                         { return "pass" }
func (passthrough) OnRead(_ *plugins.Session, p []byte) ([]byte, error)  { return p, nil }
func (passthrough) OnWrite(_ *plugins.Session, p []byte) ([]byte, error) { return p, nil }

// BenchmarkChannel pushes bytes client -> target over loopback. "baseline"
// sends straight to the target with no relay, so the ratios of the other
// cases to it show what the relay costs on this machine, measured in the
// same run:
//
//	go test -run '^$' -bench Channel -benchtime 2s ./relay/
func BenchmarkChannel(b *testing.B) {
	cases := []struct {
		name  string
		relay bool
		ps    []plugins.Plugin
	}{
		{"baseline", false, nil},
		{"fast", true, nil},
		{"hooked", true, []plugins.Plugin{passthrough{}}},
	}
	const chunk = 256 << 10
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			client, target := benchPath(b, c.relay, c.ps)
			drained := make(chan int64)
			go func() {
				n, _ := io.Copy(io.Discard, target)
				drained <- n
			}()
			buf := make([]byte, chunk)
			b.SetBytes(chunk)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := client.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			client.(*net.TCPConn).CloseWrite()
			if n := <-drained; n != int64(b.N)*chunk {
				b.Fatalf("target got %d bytes, want %d", n, int64(b.N)*chunk)
			}
		})
	}
}

// benchPath returns the client's end and the target's end, joined directly
// or through a running Channel.
func benchPath(b *testing.B, relay bool, ps []plugins.Plugin) (client, target net.Conn) {
	if !relay {
		c, tg := tcpPairB(b)
		return c, tg
	}
	client, ferryClient := tcpPairB(b)
	ferryUp, target := tcpPairB(b)
	ch := &Channel{Client: ferryClient, Upstream: ferryUp, Session: &plugins.Session{}, Chain: plugins.NewChain(ps)}
	done := make(chan struct{})
	go func() { ch.Run(context.Background()); close(done) }()
	b.Cleanup(func() { client.Close(); target.Close(); <-done })
	return client, target
}

func tcpPairB(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	c := <-acc
	b.Cleanup(func() { a.Close(); c.Close() })
	return a, c
}
