package log

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ferry/plugins"
)

// tunnelSession is a CONNECT tunnel's session as the access line sees it
// at its end.
func tunnelSession() *plugins.Session {
	client := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2), Port: 40000}
	return &plugins.Session{ID: "a1b2c3-1f", Listener: "proxy", Client: client, Peer: client,
		Protocol: "connect", Target: "example.test:443"}
}

// BenchmarkOnClose is what building one access line costs, written to
// io.Discard: the file's write comes on top.
func BenchmarkOnClose(b *testing.B) {
	p := &Plugin{name: "access", log: zerolog.New(io.Discard).With().Timestamp().Logger()}
	s := tunnelSession()
	st := plugins.Stats{Up: 1234, Down: 56789, Duration: 1500 * time.Microsecond, Reason: plugins.ReasonClientClosed}
	b.ReportAllocs()
	for b.Loop() {
		p.OnClose(s, st)
	}
}

// TestOnCloseAddresses: the addresses in the access line read as their
// String methods would write them, whatever their type.
func TestOnCloseAddresses(t *testing.T) {
	v6 := &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 443, Zone: ""}
	zoned := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 8080, Zone: "eth0"}
	lb := &net.TCPAddr{IP: net.IPv4(10, 0, 0, 9), Port: 5000}
	for _, tt := range []struct {
		name                 string
		client, peer         net.Addr
		source               netip.Addr
		wantClient, wantPeer string
		wantSource           string
	}{
		{name: "same client and peer", client: tunnelSession().Client, peer: tunnelSession().Client,
			wantClient: "127.0.0.2:40000", wantPeer: "127.0.0.2:40000"},
		{name: "PROXY header", client: v6, peer: lb, wantClient: "[2001:db8::1]:443", wantPeer: "10.0.0.9:5000"},
		{name: "zone", client: zoned, peer: zoned, wantClient: "[fe80::1%eth0]:8080", wantPeer: "[fe80::1%eth0]:8080"},
		{name: "not TCP", client: &net.UnixAddr{Name: "/run/x.sock", Net: "unix"}, peer: &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 53},
			wantClient: "/run/x.sock", wantPeer: "127.0.0.1:53"},
		{name: "none", wantClient: "", wantPeer: ""},
		{name: "IPv4 with a zone", client: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1, Zone: "lo"}, peer: &net.TCPAddr{Port: 2},
			wantClient: "127.0.0.1%lo:1", wantPeer: ":2"},
		{name: "source", client: lb, peer: lb, source: netip.MustParseAddr("192.0.2.7"),
			wantClient: "10.0.0.9:5000", wantPeer: "10.0.0.9:5000", wantSource: "192.0.2.7"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			p := &Plugin{name: "access", log: zerolog.New(&buf)}
			s := tunnelSession()
			s.Client, s.Peer, s.SourceAddr = tt.client, tt.peer, tt.source
			p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed, Err: errors.New("boom")})
			var line map[string]any
			if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
				t.Fatalf("line %q: %v", buf.String(), err)
			}
			for k, want := range map[string]string{"client": tt.wantClient, "peer": tt.wantPeer, "source": tt.wantSource,
				"target": "example.test:443", "reason": "client closed", "error": "boom"} {
				got, _ := line[k].(string)
				if got != want {
					t.Errorf("%s: got %q, want %q", k, got, want)
				}
			}
		})
	}
}
