package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"

	"ferry/plugins"
)

// resetClose closes c with SO_LINGER 0: the kernel sends RST, not FIN.
func resetClose(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// relayPaths are the ways a channel copies: spliced, spliced with idle
// copies parked, and hooked.
var relayPaths = []struct {
	name   string
	hooked bool
	park   bool
}{
	{name: "splice"},
	{name: "splice parked", park: true},
	{name: "hooked", hooked: true},
}

// newPathChannel sets up a channel on the given path.
func newPathChannel(t *testing.T, hooked, park bool) (client, target net.Conn, ch *Channel) {
	t.Helper()
	var ps []plugins.Plugin
	if hooked {
		ps = append(ps, passthrough{})
	}
	client, target, ch = setup(t, ps...)
	if park {
		ch.Parker = newTestParker(t)
	}
	return client, target, ch
}

// A reset from either side reaches the other side as a reset, on every
// copy path, with the reason naming who reset; mid-stream too, where an
// orderly close would make the cut stream look complete.
func TestChannelPassesResetOn(t *testing.T) {
	tests := []struct {
		name string
		// fromUpstream: the target resets; else the client does.
		fromUpstream bool
		// stream: bytes the resetting side sends just before its reset.
		stream int
		want   plugins.CloseReason
	}{
		{name: "upstream idle", fromUpstream: true, want: plugins.ReasonUpstreamReset},
		{name: "upstream mid-stream", fromUpstream: true, stream: 1 << 20, want: plugins.ReasonUpstreamReset},
		{name: "client idle", want: plugins.ReasonClientReset},
		{name: "client mid-stream", stream: 1 << 20, want: plugins.ReasonClientReset},
	}
	for _, p := range relayPaths {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				client, target, ch := newPathChannel(t, p.hooked, p.park)
				done := runAsync(ch, context.Background())
				exchange(t, client, target, "hello")
				if p.park {
					waitParked(t, ch.Parker, 2)
				}
				resetter, other := client, target
				if tt.fromUpstream {
					resetter, other = target, client
				}
				payload := bytes.Repeat([]byte("0123456789abcdef"), tt.stream/16)
				if len(payload) > 0 {
					if _, err := resetter.Write(payload); err != nil {
						t.Fatal(err)
					}
				}
				resetClose(t, resetter)

				got, err := io.ReadAll(other)
				if !errors.Is(err, syscall.ECONNRESET) {
					t.Errorf("other side read %d bytes, then %v; want a reset (ECONNRESET)", len(got), err)
				}
				if !bytes.HasPrefix(payload, got) {
					t.Errorf("other side got %d bytes that are not a prefix of the %d sent", len(got), len(payload))
				}
				res := <-done
				if res.Reason != tt.want {
					t.Errorf("reason: got %v (%v), want %v", res.Reason, res.Err, tt.want)
				}
			})
		}
	}
}

// A half-close stays a half-close on every path: the other side reads an
// orderly EOF, the way back still works, and the channel ends as closed,
// not reset.
func TestChannelHalfCloseIsNotReset(t *testing.T) {
	tests := []struct {
		name         string
		fromUpstream bool
		want         plugins.CloseReason
	}{
		{name: "upstream first", fromUpstream: true, want: plugins.ReasonUpstreamClosed},
		{name: "client first", want: plugins.ReasonClientClosed},
	}
	for _, p := range relayPaths {
		for _, tt := range tests {
			t.Run(p.name+"/"+tt.name, func(t *testing.T) {
				client, target, ch := newPathChannel(t, p.hooked, p.park)
				done := runAsync(ch, context.Background())
				exchange(t, client, target, "hello")
				if p.park {
					waitParked(t, ch.Parker, 2)
				}
				first, second := client, target
				if tt.fromUpstream {
					first, second = target, client
				}
				first.Write([]byte("last words"))
				first.(*net.TCPConn).CloseWrite()
				got, err := io.ReadAll(second)
				if err != nil || string(got) != "last words" {
					t.Fatalf("got %q, %v; want \"last words\" and an orderly EOF", got, err)
				}
				second.Write([]byte("answer"))
				second.(*net.TCPConn).CloseWrite()
				got, err = io.ReadAll(first)
				if err != nil || string(got) != "answer" {
					t.Fatalf("way back: got %q, %v; want \"answer\" and an orderly EOF", got, err)
				}
				res := <-done
				if res.Reason != tt.want || res.Err != nil {
					t.Errorf("reason: got %v (%v), want %v", res.Reason, res.Err, tt.want)
				}
			})
		}
	}
}

func TestIsReset(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"errno", syscall.ECONNRESET, true},
		{"wrapped", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}, true},
		{"epipe", &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, false},
		{"eof", io.EOF, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsReset(tt.err); got != tt.want {
				t.Fatalf("IsReset(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// wrapped hides a connection behind a NetConn method, as tls.Conn does.
type wrapped struct{ net.Conn }

func (w wrapped) NetConn() net.Conn { return w.Conn }

// Abort resets the peer, also through a wrapper; a plain Close does not.
func TestAbort(t *testing.T) {
	tests := []struct {
		name  string
		close func(net.Conn) error
		reset bool
	}{
		{"abort", Abort, true},
		{"abort wrapped", func(c net.Conn) error { return Abort(wrapped{c}) }, true},
		{"close", net.Conn.Close, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := tcpPair(t)
			tt.close(a)
			_, err := b.Read(make([]byte, 1))
			if got := errors.Is(err, syscall.ECONNRESET); got != tt.reset {
				t.Fatalf("peer read: %v; reset %v, want %v", err, got, tt.reset)
			}
		})
	}
}
