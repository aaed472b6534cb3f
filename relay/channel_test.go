package relay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"ferry/plugins"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		ch <- res{c, err}
	}()
	a, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	r := <-ch
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Cleanup(func() { a.Close(); r.c.Close() })
	return a, r.c
}

// setup returns the client's and the target's ends and a channel joining
// ferry's two ends.
func setup(t *testing.T, ps ...plugins.Plugin) (client, target net.Conn, ch *Channel) {
	client, ferryClient := tcpPair(t)
	ferryUp, target := tcpPair(t)
	ch = &Channel{
		Client:   ferryClient,
		Upstream: ferryUp,
		Session:  &plugins.Session{ID: "t"},
		Chain:    plugins.NewChain(ps),
	}
	for _, c := range []net.Conn{client, target} {
		c.SetDeadline(time.Now().Add(10 * time.Second))
	}
	return client, target, ch
}

func runAsync(ch *Channel, ctx context.Context) <-chan Result {
	out := make(chan Result, 1)
	go func() { out <- ch.Run(ctx) }()
	return out
}

type upper struct{}

func (upper) Name() string { return "upper" }
func (upper) OnWrite(_ *plugins.Session, p []byte) ([]byte, error) {
	return bytes.ToUpper(p), nil
}

// holdHeader holds client bytes until a blank line, then releases them all
// at once, prefixed, and greets the client by injection.
type holdHeader struct{}

type heldKey struct{}

func (holdHeader) Name() string { return "hold" }
func (holdHeader) OnRead(s *plugins.Session, p []byte) ([]byte, error) {
	held, _ := s.Value(heldKey{}).([]byte)
	if held == nil && s.Value(heldKey{}) == "done" {
		return p, nil
	}
	held = append(held, p...)
	if !bytes.Contains(held, []byte("\n\n")) {
		s.SetValue(heldKey{}, held)
		return nil, nil
	}
	s.SetValue(heldKey{}, "done")
	if err := s.SendClient([]byte("hello client\n")); err != nil {
		return nil, err
	}
	return append([]byte("X-Seen: 1\n"), held...), nil
}

type failing struct{ err error }

func (f failing) Name() string { return "failing" }
func (f failing) OnRead(*plugins.Session, []byte) ([]byte, error) {
	return nil, f.err
}

func TestChannelFastPathHalfClose(t *testing.T) {
	client, target, ch := setup(t)
	ch.IdleTimeout = time.Minute
	done := runAsync(ch, context.Background())

	payload := bytes.Repeat([]byte("abcdefgh"), 1<<17) // 1 MiB
	go func() {
		client.Write(payload)
		client.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(target)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("target got %d bytes (%v), want %d", len(got), err, len(payload))
	}
	// The target answers after the client's half-close, then closes.
	target.Write([]byte("response"))
	target.Close()
	back, err := io.ReadAll(client)
	if err != nil || string(back) != "response" {
		t.Fatalf("client got %q (%v)", back, err)
	}
	res := <-done
	if res.Up != int64(len(payload)) || res.Down != 8 {
		t.Fatalf("counts: got up %d down %d, want %d and 8", res.Up, res.Down, len(payload))
	}
	if res.Reason != plugins.ReasonClientClosed || res.Err != nil {
		t.Fatalf("reason: got %v (%v), want client closed", res.Reason, res.Err)
	}
}

func TestChannelHooks(t *testing.T) {
	client, target, ch := setup(t, holdHeader{}, upper{})
	ch.ClientPending = []byte("head: 1\n")
	done := runAsync(ch, context.Background())

	client.Write([]byte("head: 2\n"))
	client.Write([]byte("\nbody"))
	want := "X-Seen: 1\nhead: 1\nhead: 2\n\nbody"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(target, got); err != nil || string(got) != want {
		t.Fatalf("target got %q (%v), want %q", got, err, want)
	}
	target.Write([]byte("shout"))
	want = "hello client\nSHOUT"
	got = make([]byte, len(want))
	if _, err := io.ReadFull(client, got); err != nil || string(got) != want {
		t.Fatalf("client got %q (%v), want %q", got, err, want)
	}
	client.Close()
	target.Close()
	<-done
}

func TestChannelHookErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want plugins.CloseReason
	}{
		{"close", plugins.ErrClose, plugins.ReasonPluginClosed},
		{"error", errors.New("broken"), plugins.ReasonPluginError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, target, ch := setup(t, failing{tt.err})
			done := runAsync(ch, context.Background())
			client.Write([]byte("x"))
			res := <-done
			if res.Reason != tt.want {
				t.Fatalf("reason: got %v, want %v", res.Reason, tt.want)
			}
			if _, err := io.ReadAll(target); err != nil {
				t.Fatalf("target not closed cleanly: %v", err)
			}
		})
	}
}

func TestChannelIdleTimeout(t *testing.T) {
	for _, hooked := range []bool{false, true} {
		t.Run(fmt.Sprintf("hooked=%v", hooked), func(t *testing.T) {
			var ps []plugins.Plugin
			if hooked {
				ps = append(ps, upper{})
			}
			client, target, ch := setup(t, ps...)
			ch.IdleTimeout = time.Second
			start := time.Now()
			done := runAsync(ch, context.Background())
			// Traffic one way only, from the target, keeps the channel up.
			for range 5 {
				target.Write([]byte("tick"))
				buf := make([]byte, 4)
				if _, err := io.ReadFull(client, buf); err != nil {
					t.Fatalf("tick: %v", err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			res := <-done
			if res.Reason != plugins.ReasonIdleTimeout {
				t.Fatalf("reason: got %v, want idle timeout", res.Reason)
			}
			if took := time.Since(start); took < 1400*time.Millisecond {
				t.Fatalf("ended after %v, before the traffic stopped", took)
			}
		})
	}
}

func TestChannelContextCancel(t *testing.T) {
	client, _, ch := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ch, ctx)
	cancel()
	res := <-done
	if res.Reason != plugins.ReasonShutdown {
		t.Fatalf("reason: got %v, want shutdown", res.Reason)
	}
	if _, err := io.ReadAll(client); err != nil {
		t.Logf("client read after shutdown: %v", err)
	}
}

// holdAll keeps every client byte until the client's stream ends.
type holdAll struct{}

type holdAllKey struct{}

func (holdAll) Name() string { return "holdall" }
func (holdAll) OnRead(s *plugins.Session, p []byte) ([]byte, error) {
	held, _ := s.Value(holdAllKey{}).([]byte)
	s.SetValue(holdAllKey{}, append(held, p...))
	return nil, nil
}
func (holdAll) OnReadEnd(s *plugins.Session) ([]byte, error) {
	held, _ := s.Value(holdAllKey{}).([]byte)
	return append(held, "<end>"...), nil
}

type upperReader struct{}

func (upperReader) Name() string { return "upper-reader" }
func (upperReader) OnRead(_ *plugins.Session, p []byte) ([]byte, error) {
	return bytes.ToUpper(p), nil
}

// TestChannelReadEnd: bytes held until EOF are released by OnReadEnd,
// pass through the later Readers, and reach the upstream before its FIN.
func TestChannelReadEnd(t *testing.T) {
	client, target, ch := setup(t, holdAll{}, upperReader{})
	done := runAsync(ch, context.Background())
	client.Write([]byte("one "))
	client.Write([]byte("two"))
	client.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(target)
	if err != nil || string(got) != "ONE TWO<END>" {
		t.Fatalf("target got %q (%v), want ONE TWO<END>", got, err)
	}
	ctx := ch.Session.Context() // bound by Run, which is under way
	if ctx.Err() != nil {
		t.Fatal("session context ended while the channel runs")
	}
	target.Close()
	<-done
	select {
	case <-ctx.Done():
	case <-time.After(2 * time.Second):
		t.Fatal("session context still open after the channel ended")
	}
}
