package capture

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"

	"ferry/plugins"
	"ferry/plugins/pkg/units"
)

// newEnv hands New a Config as if decoded from a [[plugin]] table.
func newEnv(name string, svcs *plugins.Services, cfg Config) plugins.Env {
	return plugins.NewEnv(name, zerolog.Nop(), svcs, func(v any) error {
		*v.(*Config) = cfg
		return nil
	})
}

// startCapture builds an instance from cfg and starts its file; the
// returned stop flushes and closes the file (stopping twice is harmless).
func startCapture(t *testing.T, cfg Config) (p *Plugin, stop func()) {
	t.Helper()
	svcs := plugins.NewServices()
	pl, err := New(newEnv("capture", svcs, cfg))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := svcs.Start(context.Background()); err != nil {
		t.Fatalf("start services: %v", err)
	}
	stop = func() {
		t.Helper()
		if err := svcs.Stop(context.Background()); err != nil {
			t.Errorf("stop services: %v", err)
		}
	}
	t.Cleanup(stop)
	return pl.(*Plugin), stop
}

func size(s units.Size) *units.Size { return &s }

// session is a channel from client (empty: no address) to target.
func session(id, client, target string) *plugins.Session {
	s := &plugins.Session{ID: id, Listener: "main", Protocol: "connect", Target: target}
	if client != "" {
		s.Client = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(client))
	}
	return s
}

// chunk is n bytes one way; the bytes are a pattern that depends on the
// direction and the offset, so misplaced bytes show.
type chunk struct {
	up bool
	n  int
}

func pattern(up bool, off, n int) []byte {
	b := make([]byte, n)
	base := byte('a')
	if !up {
		base = 'A'
	}
	for i := range b {
		b[i] = base + byte((off+i)%26)
	}
	return b
}

// play sends chunks through p's hooks as the relay would and returns the
// bytes each way; the hooks must hand every chunk back unchanged.
func play(t *testing.T, p *Plugin, s *plugins.Session, chunks []chunk) (up, down []byte) {
	t.Helper()
	for _, c := range chunks {
		var b, got []byte
		var err error
		if c.up {
			b = pattern(true, len(up), c.n)
			up = append(up, b...)
			got, err = p.OnRead(s, b)
		} else {
			b = pattern(false, len(down), c.n)
			down = append(down, b...)
			got, err = p.OnWrite(s, b)
		}
		if err != nil || !bytes.Equal(got, b) || (len(b) > 0 && &got[0] != &b[0]) {
			t.Fatalf("hook returned %d bytes, %v; want the chunk itself, nil", len(got), err)
		}
	}
	return up, down
}

func TestChecksumVectors(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want uint16 // the checksum field's value, ^fold(sum)
	}{
		// RFC 1071 section 3: the sum of these words is 0xddf2.
		{name: "RFC 1071 example", data: []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}, want: ^uint16(0xddf2)},
		// A well-known IPv4 header (checksum field zeroed) whose checksum
		// is 0xb861.
		{name: "IPv4 header", data: []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11,
			0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}, want: 0xb861},
		{name: "odd length pads with zero", data: []byte{0x01, 0x02, 0x03}, want: ^uint16(0x0102 + 0x0300)},
		{name: "carry folds around", data: []byte{0xff, 0xff, 0x00, 0x02}, want: ^uint16(0x0002)},
		{name: "empty", data: nil, want: 0xffff},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ^fold(sum(tt.data, 0)); got != tt.want {
				t.Errorf("got %#04x, want %#04x", got, tt.want)
			}
		})
	}
}

func TestSegmentChecksums(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("198.51.100.7:443")
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8::ff]:443")
	tests := []struct {
		name     string
		src, dst netip.AddrPort
		flags    byte
		opts     []byte
		payload  int
	}{
		{name: "ipv4 syn with options", src: v4a, dst: v4b, flags: flagSYN, opts: synOptions},
		{name: "ipv4 odd payload", src: v4a, dst: v4b, flags: flagACK | flagPSH, payload: 1001},
		{name: "ipv4 full segment", src: v4b, dst: v4a, flags: flagACK, payload: maxSegment},
		{name: "ipv6 syn-ack", src: v6b, dst: v6a, flags: flagSYN | flagACK, opts: synOptions},
		{name: "ipv6 odd payload", src: v6a, dst: v6b, flags: flagACK | flagPSH, payload: 3},
		{name: "ipv6 full segment", src: v6a, dst: v6b, flags: flagACK, payload: maxSegment},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			payload := pattern(true, 0, tt.payload)
			seg := segment{src: tt.src, dst: tt.dst, seq: 0xfffffff0, ack: 12345, flags: tt.flags, opts: tt.opts, ipID: 7}
			pkt := append(seg.headers(payload), payload...)
			p, err := decodeTCP(pkt)
			if err != nil {
				t.Fatal(err)
			}
			if p.src != tt.src || p.dst != tt.dst || p.seq != seg.seq || p.ack != seg.ack || p.flags != tt.flags {
				t.Errorf("got %v -> %v seq %d ack %d flags %#x, want %v -> %v seq %d ack %d flags %#x",
					p.src, p.dst, p.seq, p.ack, p.flags, tt.src, tt.dst, seg.seq, seg.ack, tt.flags)
			}
			if !bytes.Equal(p.payload, payload) {
				t.Errorf("payload: got %d bytes, want %d", len(p.payload), len(payload))
			}
			// A flipped payload bit must break the TCP checksum.
			if len(payload) > 0 {
				pkt[len(pkt)-1] ^= 0x01
				if _, err := decodeTCP(pkt); err == nil || !strings.Contains(err.Error(), "TCP checksum") {
					t.Errorf("corrupted packet: got %v, want a TCP checksum error", err)
				}
			}
		})
	}
}

func TestAddresses(t *testing.T) {
	tests := []struct {
		name           string
		client, target string
		dialed         string // s.UpstreamAddr; "": nil
		chain          string // s.UpstreamPath
		wantClient     string // "" : check the prefix instead
		wantTarget     string
		clientPrefix   string
		targetPrefix   string
		introHas       []string
	}{
		{name: "ipv4", client: "127.0.0.1:40000", target: "127.0.0.1:8080",
			wantClient: "127.0.0.1:40000", wantTarget: "127.0.0.1:8080"},
		{name: "ipv6", client: "[::1]:40000", target: "[::1]:443",
			wantClient: "[::1]:40000", wantTarget: "[::1]:443"},
		{name: "ipv4 client, ipv6 target", client: "127.0.0.1:40000", target: "[2001:db8::1]:443",
			wantClient: "[::ffff:127.0.0.1]:40000", wantTarget: "[2001:db8::1]:443"},
		{name: "ipv6 client, ipv4 target", client: "[2001:db8::2]:5000", target: "192.0.2.9:80",
			wantClient: "[2001:db8::2]:5000", wantTarget: "[::ffff:192.0.2.9]:80"},
		{name: "mapped client is ipv4", client: "[::ffff:10.0.0.1]:5000", target: "192.0.2.9:80",
			wantClient: "10.0.0.1:5000", wantTarget: "192.0.2.9:80"},
		{name: "zone dropped", client: "[fe80::1%eth0]:5000", target: "[fe80::2%eth0]:80",
			wantClient: "[fe80::1]:5000", wantTarget: "[fe80::2]:80"},
		{name: "name, ipv4 client", client: "127.0.0.1:40000", target: "example.com:443",
			wantClient: "127.0.0.1:40000", targetPrefix: "198.18.0.0/15",
			introHas: []string{"target example.com:443 (a name: shown as 198.1"}},
		{name: "name, ipv6 client", client: "[::1]:40000", target: "example.com:443",
			wantClient: "[::1]:40000", targetPrefix: "2001:2::/48",
			introHas: []string{"target example.com:443 (a name: shown as [2001:2:"}},
		{name: "no client address", target: "192.0.2.9:80",
			clientPrefix: "198.18.0.0/15", wantTarget: "192.0.2.9:80",
			introHas: []string{"client unknown", "client shown as 198.1"}},
		{name: "name, connected", client: "127.0.0.1:40000", target: "localhost:8080", dialed: "127.0.0.1:8080",
			wantClient: "127.0.0.1:40000", wantTarget: "127.0.0.1:8080",
			introHas: []string{"target localhost:8080 (connected to 127.0.0.1:8080)"}},
		{name: "name, connected over ipv6, ipv4 client", client: "127.0.0.1:40000", target: "www.example:443", dialed: "[2001:db8::7]:443",
			wantClient: "[::ffff:127.0.0.1]:40000", wantTarget: "[2001:db8::7]:443",
			introHas: []string{"target www.example:443 (connected to [2001:db8::7]:443)"}},
		{name: "name, connected to a mapped address", client: "[::1]:40000", target: "www.example:443", dialed: "[::ffff:192.0.2.7]:443",
			wantClient: "[::1]:40000", wantTarget: "[::ffff:192.0.2.7]:443"},
		{name: "name, dialed directly by a route", client: "127.0.0.1:40000", target: "www.example:443", dialed: "192.0.2.1:443",
			wantClient: "127.0.0.1:40000", wantTarget: "192.0.2.1:443"},
		{name: "name, through an upstream proxy", client: "127.0.0.1:40000", target: "www.example:443", dialed: "192.0.2.1:443", chain: "corp",
			wantClient: "127.0.0.1:40000", targetPrefix: "198.18.0.0/15",
			introHas: []string{"target www.example:443 (a name: shown as 198.1"}},
		{name: "name, connected to another port", client: "127.0.0.1:40000", target: "www.example:443", dialed: "192.0.2.1:3128",
			wantClient: "127.0.0.1:40000", targetPrefix: "198.18.0.0/15",
			introHas: []string{"target www.example:443 (a name: shown as 198.1"}},
		{name: "address target keeps its address", client: "127.0.0.1:40000", target: "192.0.2.9:80", dialed: "192.0.2.10:80",
			wantClient: "127.0.0.1:40000", wantTarget: "192.0.2.9:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			withDial := func(s *plugins.Session) *plugins.Session {
				if tt.dialed != "" {
					s.UpstreamAddr = net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tt.dialed))
				}
				s.UpstreamPath = tt.chain
				if tt.chain != "" {
					s.Upstream = tt.chain
				} else {
					s.Upstream = "direct"
				}
				return s
			}
			s := withDial(session("abc-1", tt.client, tt.target))
			st := newStream(s)
			got := [2]netip.AddrPort{st.ends[0], st.ends[1]}
			for i, c := range []struct{ want, prefix string }{{tt.wantClient, tt.clientPrefix}, {tt.wantTarget, tt.targetPrefix}} {
				if c.want != "" && got[i].String() != c.want {
					t.Errorf("end %d: got %v, want %s", i, got[i], c.want)
				}
				if c.prefix != "" && !netip.MustParsePrefix(c.prefix).Contains(got[i].Addr()) {
					t.Errorf("end %d: got %v, want an address in %s", i, got[i], c.prefix)
				}
			}
			if got[0].Addr().Is4() != got[1].Addr().Is4() {
				t.Errorf("families differ: %v and %v", got[0], got[1])
			}
			if port := got[1].Port(); tt.target != "" && !strings.HasSuffix(tt.target, fmt.Sprintf(":%d", port)) {
				t.Errorf("target port %d, want the one of %s", port, tt.target)
			}
			for _, w := range append(tt.introHas, "ferry channel abc-1", "target "+tt.target) {
				if !strings.Contains(st.intro, w) {
					t.Errorf("intro %q lacks %q", st.intro, w)
				}
			}
			if again := newStream(withDial(session("abc-2", tt.client, tt.target))); again.ends[1] != st.ends[1] {
				t.Errorf("target address not stable: %v then %v", st.ends[1], again.ends[1])
			}
		})
	}
}

func TestSequenceNumbers(t *testing.T) {
	tests := []struct {
		name           string
		client, target string
		chunks         []chunk
		reason         plugins.CloseReason
		wantFirstFIN   int // 0 client, 1 target
	}{
		{name: "one chunk each way", client: "127.0.0.1:40000", target: "127.0.0.1:8080",
			chunks: []chunk{{true, 10}, {false, 20}}, reason: plugins.ReasonClientClosed},
		{name: "several chunks both ways", client: "127.0.0.1:40001", target: "192.0.2.1:80",
			chunks: []chunk{{true, 5}, {false, 7}, {true, 3}, {true, 11}, {false, 1}, {false, 2}, {true, 1}},
			reason: plugins.ReasonUpstreamClosed, wantFirstFIN: 1},
		{name: "chunks larger than a segment", client: "127.0.0.1:40002", target: "192.0.2.1:80",
			chunks: []chunk{{true, maxSegment}, {false, 150000}, {true, maxSegment + 1}, {false, 2*maxSegment + 7}},
			reason: plugins.ReasonUpstreamClosed, wantFirstFIN: 1},
		{name: "ipv6", client: "[::1]:40003", target: "[2001:db8::1]:443",
			chunks: []chunk{{true, 300}, {false, 70000}, {true, 1}}, reason: plugins.ReasonClientClosed},
		{name: "mixed families", client: "127.0.0.1:40004", target: "[::1]:443",
			chunks: []chunk{{false, 5}, {true, 5}}, reason: plugins.ReasonClientClosed},
		{name: "name target", client: "[::1]:40005", target: "example.com:443",
			chunks: []chunk{{true, 40}, {false, 4000}}, reason: plugins.ReasonCompleted},
		{name: "one way only", client: "127.0.0.1:40006", target: "127.0.0.1:25",
			chunks: []chunk{{false, 100}}, reason: plugins.ReasonUpstreamClosed, wantFirstFIN: 1},
		{name: "no data", client: "127.0.0.1:40007", target: "127.0.0.1:25", reason: plugins.ReasonIdleTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.pcapng")
			p, stop := startCapture(t, Config{File: path, MaxBytes: size(0)})
			s := session("chan-1", tt.client, tt.target)
			up, down := play(t, p, s, tt.chunks)
			p.OnClose(s, plugins.Stats{Reason: tt.reason})
			stop()

			ps := tcpPackets(t, readCapture(t, path))
			c := follow(t, ps, nil)
			if !bytes.Equal(c.up, up) || !bytes.Equal(c.down, down) {
				t.Errorf("payload: got %d bytes up, %d down; want %d and %d, the same bytes", len(c.up), len(c.down), len(up), len(down))
			}
			if c.gaps != [2]int{} {
				t.Errorf("sequence gaps %v, want none", c.gaps)
			}
			if want := c.client; tt.wantFirstFIN == 1 {
				if c.firstFIN != c.target {
					t.Errorf("first FIN from %v, want the target %v", c.firstFIN, c.target)
				}
			} else if c.firstFIN != want {
				t.Errorf("first FIN from %v, want the client %v", c.firstFIN, want)
			}
			// 3 for the handshake, per chunk its segments and an ACK, 3
			// for the close.
			want := 6
			for _, ch := range tt.chunks {
				want += (ch.n+maxSegment-1)/maxSegment + 1
			}
			if c.packets != want || len(ps) != want {
				t.Errorf("got %d packets (%d in the file), want %d", c.packets, len(ps), want)
			}
			if len(c.comments) != 2 || !strings.Contains(c.comments[0], "ferry channel chan-1, listener main, connect") ||
				!strings.Contains(c.comments[1], "closed: "+tt.reason.String()) {
				t.Errorf("comments %q, want the channel's description and how it closed", c.comments)
			}
		})
	}
}

// steps drives p's hooks for s from a script of space-separated steps,
// in order: "c10" 10 bytes from the client (OnRead), "t10" from the
// target (OnWrite), "C" the client's stream ends (OnReadEnd), "T" the
// target's (OnWriteEnd), "s101" the session's HTTP status becomes 101.
// It returns the bytes each way, including those the capture must leave
// out.
func steps(t *testing.T, p *Plugin, s *plugins.Session, script string) (up, down []byte) {
	t.Helper()
	for _, st := range strings.Fields(script) {
		var n int
		if len(st) > 1 {
			if _, err := fmt.Sscan(st[1:], &n); err != nil {
				t.Fatalf("step %q: %v", st, err)
			}
		}
		var err error
		switch st[0] {
		case 'c':
			up = append(up, pattern(true, len(up), n)...)
			if _, err = p.OnRead(s, up[len(up)-n:]); err != nil {
				t.Fatalf("OnRead: %v", err)
			}
		case 't':
			down = append(down, pattern(false, len(down), n)...)
			if _, err = p.OnWrite(s, down[len(down)-n:]); err != nil {
				t.Fatalf("OnWrite: %v", err)
			}
		case 'C':
			var rest []byte
			if rest, err = p.OnReadEnd(s); err != nil || len(rest) > 0 {
				t.Fatalf("OnReadEnd: %d bytes, %v; want none, nil", len(rest), err)
			}
		case 'T':
			var rest []byte
			if rest, err = p.OnWriteEnd(s); err != nil || len(rest) > 0 {
				t.Fatalf("OnWriteEnd: %d bytes, %v; want none, nil", len(rest), err)
			}
		case 's':
			s.Status = n
		default:
			t.Fatalf("unknown step %q", st)
		}
	}
	return up, down
}

// TestEnds checks that each side's FIN is written when its stream ends,
// in the order the ends happened, and that OnClose writes what is still
// missing, with the closing comment.
func TestEnds(t *testing.T) {
	reset := errors.New("read: connection reset by peer")
	tests := []struct {
		name     string
		protocol string // default "connect"
		upgrade  bool   // a plain HTTP request that asks to upgrade
		script   string
		stats    plugins.Stats
		// wantTrace is the connection read back (see conversation.trace).
		wantTrace string
		// wantCommentOnFIN: the closing comment is on a FIN (OnClose wrote
		// one), else on the last ACK.
		wantCommentOnFIN bool
		wantLate         int // bytes left out after their side's FIN
	}{
		{name: "target ends first", script: "c10 t20 T C",
			stats: plugins.Stats{Reason: plugins.ReasonUpstreamClosed}, wantTrace: "c10 t20 T C"},
		{name: "client ends first", script: "c10 t20 C T",
			stats: plugins.Stats{Reason: plugins.ReasonClientClosed}, wantTrace: "c10 t20 C T"},
		{name: "half-close: the target sends on after the client's end", script: "c10 C t20 t5 T",
			stats: plugins.Stats{Reason: plugins.ReasonClientClosed}, wantTrace: "c10 C t25 T"},
		{name: "the reason does not reorder real ends", script: "c10 C t20 T",
			stats: plugins.Stats{Reason: plugins.ReasonUpstreamClosed}, wantTrace: "c10 C t20 T"},
		{name: "client ended, then a reset", script: "c10 C t5",
			stats:     plugins.Stats{Reason: plugins.ReasonUpstreamClosed, Err: reset},
			wantTrace: "c10 C t5 T", wantCommentOnFIN: true},
		{name: "no end before an error: the reason guesses", script: "c10 t5",
			stats:     plugins.Stats{Reason: plugins.ReasonUpstreamClosed, Err: reset},
			wantTrace: "c10 t5 T C", wantCommentOnFIN: true},
		{name: "ends without data", script: "T C",
			stats: plugins.Stats{Reason: plugins.ReasonUpstreamClosed}, wantTrace: "T C"},
		{name: "an end hook called twice writes one FIN", script: "c3 C C t4 T T",
			stats: plugins.Stats{Reason: plugins.ReasonClientClosed}, wantTrace: "c3 C t4 T"},
		{name: "http request and response", protocol: "http", script: "c30 C s200 t40 T",
			stats: plugins.Stats{Reason: plugins.ReasonCompleted}, wantTrace: "c30 C t40 T"},
		{name: "http request sent again on a new connection", protocol: "http", script: "c30 C c30 C s200 t40 T",
			stats: plugins.Stats{Reason: plugins.ReasonCompleted}, wantTrace: "c30 C t40 T", wantLate: 30},
		{name: "http upgrade: the tunnel's ends count", protocol: "http", upgrade: true,
			script: "c30 C s101 t40 T c5 t6 c7 T t0 C",
			stats:  plugins.Stats{Reason: plugins.ReasonUpstreamClosed}, wantTrace: "c30 t40 c5 t6 c7 T C"},
		{name: "http upgrade refused: the request's end waits for the response", protocol: "http", upgrade: true,
			script: "c30 C s200 t40 T",
			stats:  plugins.Stats{Reason: plugins.ReasonCompleted}, wantTrace: "c30 t40 C T"},
		{name: "http upgrade without a response", protocol: "http", upgrade: true, script: "c30 C",
			stats:     plugins.Stats{Reason: plugins.ReasonUpstreamClosed, Err: io.ErrUnexpectedEOF},
			wantTrace: "c30 C T", wantCommentOnFIN: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.pcapng")
			p, stop := startCapture(t, Config{File: path, MaxBytes: size(0)})
			s := session("end-1", "127.0.0.1:40000", "127.0.0.1:8080")
			if tt.protocol != "" {
				s.Protocol = tt.protocol
			}
			if tt.upgrade {
				s.Request = &http.Request{Header: http.Header{"Connection": {"Upgrade"}, "Upgrade": {"websocket"}}}
			}
			up, down := steps(t, p, s, tt.script)
			p.OnClose(s, tt.stats)
			stop()

			c := follow(t, tcpPackets(t, readCapture(t, path)), nil)
			if c.trace != tt.wantTrace {
				t.Errorf("got %q, want %q", c.trace, tt.wantTrace)
			}
			if want := up[:len(up)-tt.wantLate]; !bytes.Equal(c.up, want) || !bytes.Equal(c.down, down) {
				t.Errorf("payload: got %d bytes up, %d down; want %d and %d, the same bytes", len(c.up), len(c.down), len(want), len(down))
			}
			if len(c.comments) != 2 || !strings.Contains(c.comments[1], "closed: "+tt.stats.Reason.String()) {
				t.Fatalf("comments %q, want the channel's description and how it closed", c.comments)
			}
			onLast := len(c.last.comments) == 1 && c.last.comments[0] == c.comments[1]
			if onLast == tt.wantCommentOnFIN {
				t.Errorf("closing comment on the last ACK: %v, want %v", onLast, !tt.wantCommentOnFIN)
			}
			if got := strings.Contains(c.comments[1], fmt.Sprintf("; %d bytes sent after their side's FIN", tt.wantLate)); got != (tt.wantLate > 0) {
				t.Errorf("closing comment %q: mentions %d late bytes %v, want %v", c.comments[1], tt.wantLate, got, tt.wantLate > 0)
			}
		})
	}
}

func TestPcapngStructure(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	before := time.Now()
	p, stop := startCapture(t, Config{File: path})
	s := session("chan-1", "127.0.0.1:40000", "127.0.0.1:80")
	play(t, p, s, []chunk{{true, 3}, {false, 5}})
	p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
	stop()
	after := time.Now()

	c := readCapture(t, path)
	if c.sections != 1 || len(c.ifaces) != 1 {
		t.Fatalf("got %d sections and %d interfaces, want 1 and 1", c.sections, len(c.ifaces))
	}
	if ifc := c.ifaces[0]; ifc.linkType != 101 || ifc.snapLen != 0 || ifc.tsresol != 9 {
		t.Errorf("interface %+v, want LINKTYPE_RAW (101), snaplen 0, nanosecond timestamps", ifc)
	}
	if len(c.packets) != 10 {
		t.Fatalf("got %d packets, want 10", len(c.packets))
	}
	last := before
	for i, pk := range c.packets {
		if pk.ts.Before(last) || pk.ts.After(after) {
			t.Errorf("packet %d: timestamp %v not between %v and %v, in order", i+1, pk.ts, last, after)
		}
		last = pk.ts
	}
	if len(c.packets[0].comments) != 1 || len(c.packets[7].comments) != 1 {
		t.Errorf("comments on SYN %q and first FIN %q, want one each", c.packets[0].comments, c.packets[7].comments)
	}
}

func TestIPv6Packets(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	p, stop := startCapture(t, Config{File: path})
	s := session("v6-1", "[2001:db8::10]:51000", "[2001:db8::20]:443")
	play(t, p, s, []chunk{{true, 17}, {false, 70000}})
	p.OnClose(s, plugins.Stats{Reason: plugins.ReasonUpstreamClosed})
	stop()
	c := readCapture(t, path)
	for i, pk := range c.packets {
		if v := pk.data[0] >> 4; v != 6 {
			t.Fatalf("packet %d: IP version %d, want 6", i+1, v)
		}
	}
	conv := follow(t, tcpPackets(t, c), nil)
	if conv.client.String() != "[2001:db8::10]:51000" || conv.target.String() != "[2001:db8::20]:443" {
		t.Errorf("got %v -> %v", conv.client, conv.target)
	}
	if len(conv.up) != 17 || len(conv.down) != 70000 {
		t.Errorf("got %d bytes up and %d down, want 17 and 70000", len(conv.up), len(conv.down))
	}
}

func TestMaxBytes(t *testing.T) {
	tests := []struct {
		name               string
		limit              *units.Size
		chunks             []chunk
		wantUp, wantDown   int // bytes recorded
		wantGaps           [2]int
		wantCommentMention bool
	}{
		{name: "limit reached mid-chunk", limit: size(100),
			chunks: []chunk{{true, 60}, {false, 60}, {true, 50}},
			wantUp: 60, wantDown: 40, wantGaps: [2]int{50, 20}, wantCommentMention: true},
		{name: "limit reached at a chunk's end", limit: size(100),
			chunks: []chunk{{true, 100}, {false, 10}, {true, 5}},
			wantUp: 100, wantDown: 0, wantGaps: [2]int{5, 10}, wantCommentMention: true},
		{name: "under the limit", limit: size(100),
			chunks: []chunk{{true, 50}, {false, 50}}, wantUp: 50, wantDown: 50},
		{name: "zero: no limit", limit: size(0),
			chunks: []chunk{{true, 3 << 20}, {false, 1}}, wantUp: 3 << 20, wantDown: 1},
		{name: "default 1MiB", limit: nil,
			chunks: []chunk{{false, 1<<20 - 10}, {true, 20}, {false, 5}},
			wantUp: 10, wantDown: 1<<20 - 10, wantGaps: [2]int{10, 5}, wantCommentMention: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.pcapng")
			p, stop := startCapture(t, Config{File: path, MaxBytes: tt.limit})
			s := session("lim-1", "127.0.0.1:40000", "127.0.0.1:80")
			up, down := play(t, p, s, tt.chunks)
			p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
			stop()

			c := follow(t, tcpPackets(t, readCapture(t, path)), nil)
			if !bytes.Equal(c.up, up[:tt.wantUp]) || !bytes.Equal(c.down, down[:tt.wantDown]) {
				t.Errorf("recorded %d bytes up and %d down, want the first %d and %d", len(c.up), len(c.down), tt.wantUp, tt.wantDown)
			}
			if c.gaps != tt.wantGaps {
				t.Errorf("gaps in sequence space %v, want %v", c.gaps, tt.wantGaps)
			}
			summary := c.comments[len(c.comments)-1]
			if got := strings.Contains(summary, "not recorded"); got != tt.wantCommentMention {
				t.Errorf("closing comment %q: mentions unrecorded bytes %v, want %v", summary, got, tt.wantCommentMention)
			}
			if want := fmt.Sprintf("%d bytes client to target, %d target to client", len(up), len(down)); !strings.Contains(summary, want) {
				t.Errorf("closing comment %q lacks %q", summary, want)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	const rotateSize = 4 << 10
	tests := []struct {
		name      string
		keep      int
		wantFiles []string // suffixes that exist
		wantGone  []string // suffixes that must not
	}{
		{name: "keep two", keep: 2, wantFiles: []string{"", ".1", ".2"}, wantGone: []string{".3"}},
		{name: "keep none", keep: 0, wantFiles: []string{""}, wantGone: []string{".1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.pcapng")
			p, stop := startCapture(t, Config{File: path, RotateSize: size(rotateSize), RotateKeep: &tt.keep})
			s := session("rot-1", "127.0.0.1:40000", "127.0.0.1:80")
			var chunks []chunk
			for i := range 40 {
				chunks = append(chunks, chunk{i%2 == 0, 500})
			}
			play(t, p, s, chunks)
			p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
			stop()

			for _, suffix := range tt.wantFiles {
				fi, err := os.Stat(path + suffix)
				if err != nil {
					t.Fatalf("rotated file: %v", err)
				}
				if fi.Size() > rotateSize {
					t.Errorf("%s: %d bytes, more than rotate_size %d", fi.Name(), fi.Size(), rotateSize)
				}
				c := readCapture(t, path+suffix) // starts with its own SHB and IDB
				if c.sections != 1 || len(c.packets) == 0 {
					t.Errorf("%s: %d sections, %d packets; want 1 and some", fi.Name(), c.sections, len(c.packets))
					continue
				}
				if cs := c.packets[0].comments; len(cs) == 0 || !strings.Contains(cs[0], "ferry channel rot-1, listener main") {
					t.Errorf("%s: first packet's comments %q, want the channel's description", fi.Name(), cs)
				}
				tcpPackets(t, c) // checksums
			}
			for _, suffix := range tt.wantGone {
				if _, err := os.Stat(path + suffix); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s%s: got %v, want it absent", filepath.Base(path), suffix, err)
				}
			}
			// The newest file ends with the FIN exchange, its sequence
			// numbers continuing those of the file before.
			cur := tcpPackets(t, readCapture(t, path))
			if n := len(cur); n < 3 || cur[n-3].flags&flagFIN == 0 || cur[n-2].flags&flagFIN == 0 {
				t.Errorf("newest file does not end with the FIN exchange")
			}
			// Read in order, the kept files continue one another: each
			// side's sequence numbers run on without a jump.
			var all []tcpPacket
			for i := tt.keep; i >= 0; i-- {
				name := path
				if i > 0 {
					name = fmt.Sprintf("%s.%d", path, i)
				}
				all = append(all, tcpPackets(t, readCapture(t, name))...)
			}
			next := map[netip.AddrPort]uint32{}
			for i, pk := range all {
				if want, ok := next[pk.src]; ok && pk.seq != want {
					t.Fatalf("packet %d of the kept files: seq %d from %v, want %d", i+1, pk.seq, pk.src, want)
				}
				next[pk.src] = pk.seq + uint32(len(pk.payload))
				if pk.flags&(flagSYN|flagFIN) != 0 {
					next[pk.src]++
				}
			}
		})
	}
}

func TestAppendAndOpen(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		setup   func(path string)
		wantErr string
	}{
		{name: "new file"},
		{name: "existing capture gets a new section", setup: func(path string) {
			p, stop := startCapture(t, Config{File: path})
			s := session("old-1", "127.0.0.1:1", "127.0.0.1:2")
			play(t, p, s, []chunk{{true, 1}})
			p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
			stop()
		}},
		{name: "not pcapng", setup: func(path string) { os.WriteFile(path, []byte("precious notes\n"), 0o644) },
			wantErr: "not a pcapng file"},
		{name: "missing directory", setup: func(path string) { os.Remove(filepath.Dir(path)) },
			wantErr: "open capture file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprint(i), "c.pcapng")
			os.MkdirAll(filepath.Dir(path), 0o755)
			if tt.setup != nil {
				tt.setup(path)
			}
			before, _ := os.ReadFile(path)
			svcs := plugins.NewServices()
			pl, err := New(newEnv("capture", svcs, Config{File: path}))
			if err != nil {
				t.Fatal(err)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
				t.Fatal("New touched the file; only Start may")
			}
			err = svcs.Start(context.Background())
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Start: got %v, want an error with %q", err, tt.wantErr)
				}
				if after, _ := os.ReadFile(path); !bytes.Equal(after, before) {
					t.Fatal("a refused file was changed")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			p := pl.(*Plugin)
			s := session("new-1", "127.0.0.1:3", "127.0.0.1:4")
			play(t, p, s, []chunk{{true, 2}})
			p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
			if err := svcs.Stop(context.Background()); err != nil {
				t.Fatal(err)
			}
			c := readCapture(t, path)
			wantSections := 1
			if len(before) > 0 {
				wantSections = 2
			}
			if c.sections != wantSections || len(c.ifaces) != wantSections {
				t.Errorf("got %d sections, %d interfaces; want %d each", c.sections, len(c.ifaces), wantSections)
			}
			if !bytes.HasPrefix(mustRead(t, path), before) {
				t.Error("the earlier capture was not kept as it was")
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestNewConfig(t *testing.T) {
	neg, two := -1, 2
	tests := []struct {
		name      string
		cfg       Config
		wantErr   string // prefix; "" for success
		wantLimit int64
	}{
		{name: "defaults", cfg: Config{File: "/tmp/x.pcapng"}, wantLimit: int64(DefaultMaxBytes)},
		{name: "max_bytes set", cfg: Config{File: "/tmp/x.pcapng", MaxBytes: size(4096)}, wantLimit: 4096},
		{name: "rotation", cfg: Config{File: "/tmp/x.pcapng", RotateSize: size(units.MiB), RotateKeep: &two}, wantLimit: int64(DefaultMaxBytes)},
		{name: "no file", cfg: Config{}, wantErr: "file: set file (a pcapng file), har (a HAR file) or both"},
		{name: "har only", cfg: Config{Har: "x.har"}, wantLimit: int64(DefaultMaxBytes)},
		{name: "both", cfg: Config{File: "x.pcapng", Har: "x.har", HarMaxBody: size(0)}, wantLimit: int64(DefaultMaxBytes)},
		{name: "har is file", cfg: Config{File: "x", Har: "x"}, wantErr: "har: "},
		{name: "negative har_max_body", cfg: Config{Har: "x", HarMaxBody: size(-1)}, wantErr: "har_max_body: must be between 0 and 1GiB"},
		{name: "huge har_max_body", cfg: Config{Har: "x", HarMaxBody: size(2 * units.GiB)}, wantErr: "har_max_body: must be between"},
		{name: "har_max_body alone", cfg: Config{File: "x", HarMaxBody: size(10)}, wantErr: "har_max_body: needs har"},
		{name: "negative max_bytes", cfg: Config{File: "x", MaxBytes: size(-1)}, wantErr: "max_bytes: must not be negative"},
		{name: "negative rotate_size", cfg: Config{File: "x", RotateSize: size(-1)}, wantErr: "rotate_size: must not be negative"},
		{name: "negative rotate_keep", cfg: Config{File: "x", RotateSize: size(units.MiB), RotateKeep: &neg}, wantErr: "rotate_keep: must not be negative"},
		{name: "rotate_keep alone", cfg: Config{File: "x", RotateKeep: &two}, wantErr: "rotate_keep: needs rotate_size"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.cfg.File != "" {
				tt.cfg.File = filepath.Join(dir, tt.cfg.File)
			}
			if tt.cfg.Har != "" {
				tt.cfg.Har = filepath.Join(dir, tt.cfg.Har)
			}
			p, err := New(newEnv("cap", plugins.NewServices(), tt.cfg))
			if tt.wantErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error starting %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := p.(*Plugin).limit; got != tt.wantLimit {
				t.Errorf("limit %d, want %d", got, tt.wantLimit)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("New created %v; files open only at Start", entries)
			}
		})
	}
}

func TestSharedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	svcs := plugins.NewServices()
	a, err := New(newEnv("a", svcs, Config{File: path, RotateSize: size(units.MiB)}))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(newEnv("b", svcs, Config{File: path + "/../c.pcapng", RotateSize: size(units.MiB), MaxBytes: size(10)}))
	if err != nil {
		t.Fatalf("same file, same rotation: %v", err)
	}
	if a.(*Plugin).file != b.(*Plugin).file {
		t.Error("two instances naming one file got two services")
	}
	_, err = New(newEnv("c", svcs, Config{File: path}))
	if err == nil || !strings.HasPrefix(err.Error(), "file: ") {
		t.Errorf("same file, other rotation: got %v, want a file: error", err)
	}
}

func TestClosedWithoutData(t *testing.T) {
	tests := []struct {
		name        string
		stats       plugins.Stats
		wantPackets int
	}{
		{name: "rejected", stats: plugins.Stats{Reason: plugins.ReasonRejected, Err: errors.New("forbidden")}},
		{name: "dial failed", stats: plugins.Stats{Reason: plugins.ReasonDialFailed, Err: errors.New("refused")}},
		{name: "failed before data", stats: plugins.Stats{Reason: plugins.ReasonShutdown, Err: errors.New("shutting down")}},
		{name: "idle, never a byte", stats: plugins.Stats{Reason: plugins.ReasonIdleTimeout}, wantPackets: 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.pcapng")
			p, stop := startCapture(t, Config{File: path})
			p.OnClose(session("x-1", "127.0.0.1:1", "127.0.0.1:2"), tt.stats)
			stop()
			if got := len(readCapture(t, path).packets); got != tt.wantPackets {
				t.Errorf("got %d packets, want %d", got, tt.wantPackets)
			}
		})
	}
}

// TestConcurrentChannels runs many channels at once, each with its two
// directions (data, then the end) on their own goroutines as the relay
// does; every connection in the shared file must still be consistent.
func TestConcurrentChannels(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	p, stop := startCapture(t, Config{File: path, MaxBytes: size(0)})
	const channels, chunks = 16, 20
	type sent struct{ up, down []byte }
	results := make([]sent, channels)
	var wg sync.WaitGroup
	for i := range channels {
		wg.Go(func() {
			s := session(fmt.Sprintf("c-%d", i), fmt.Sprintf("127.0.0.1:%d", 41000+i), "127.0.0.1:80")
			var inner sync.WaitGroup
			inner.Go(func() {
				for j := range chunks {
					b := pattern(true, len(results[i].up), 100+j*37+i)
					results[i].up = append(results[i].up, b...)
					p.OnRead(s, b)
				}
				p.OnReadEnd(s)
			})
			for j := range chunks {
				b := pattern(false, len(results[i].down), 1000+j*101)
				results[i].down = append(results[i].down, b...)
				p.OnWrite(s, b)
			}
			p.OnWriteEnd(s)
			inner.Wait()
			p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
		})
	}
	wg.Wait()
	stop()

	ps := tcpPackets(t, readCapture(t, path))
	for i := range channels {
		client := netip.MustParseAddrPort(fmt.Sprintf("127.0.0.1:%d", 41000+i))
		c := follow(t, ps, &client)
		if !bytes.Equal(c.up, results[i].up) || !bytes.Equal(c.down, results[i].down) {
			t.Errorf("channel %d: got %d/%d bytes, want %d/%d, the same", i, len(c.up), len(c.down), len(results[i].up), len(results[i].down))
		}
	}
}

func TestCommentText(t *testing.T) {
	long := strings.Repeat("é", 2000) // 4000 bytes
	tests := []struct {
		name, in string
		want     string // "" : only check length and validity
	}{
		{name: "plain", in: "ferry channel a-1", want: "ferry channel a-1"},
		{name: "invalid UTF-8", in: "target \xff\xfe:443", want: "target \uFFFD:443"},
		{name: "long, cut at a rune", in: long},
		{name: "long ASCII", in: strings.Repeat("x", 70000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := commentText(tt.in)
			if tt.want != "" && got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if len(got) > maxComment || !utf8.ValidString(got) {
				t.Errorf("got %d bytes, valid UTF-8 %v; want at most %d, valid", len(got), utf8.ValidString(got), maxComment)
			}
		})
	}

	// A very long target name still makes a readable file.
	path := filepath.Join(t.TempDir(), "c.pcapng")
	p, stop := startCapture(t, Config{File: path})
	s := session("long-1", "127.0.0.1:1", strings.Repeat("a", 100000)+".test:443")
	play(t, p, s, []chunk{{true, 1}})
	p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
	stop()
	c := follow(t, tcpPackets(t, readCapture(t, path)), nil)
	if len(c.comments) != 2 || len(c.comments[0]) > maxComment {
		t.Errorf("got %d comments, the first %d bytes long", len(c.comments), len(c.comments[0]))
	}
}

// TestFlushWhileRunning: packets reach the file within flushInterval,
// without waiting for Stop, so a capture can be read while ferry runs.
func TestFlushWhileRunning(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.pcapng")
	p, _ := startCapture(t, Config{File: path})
	s := session("live-1", "127.0.0.1:1", "127.0.0.1:2")
	play(t, p, s, []chunk{{true, 5}, {false, 7}})
	deadline := time.Now().Add(3 * flushInterval)
	for {
		raw, _ := os.ReadFile(path)
		if c, err := parseCapture(raw); err == nil && len(c.packets) == 7 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the file holds %d bytes after %v, want the handshake and two chunks", len(raw), 3*flushInterval)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWriteError: when the file cannot be written, capturing stops with
// one error line, the hooks go on passing data, and Stop reports it.
func TestWriteError(t *testing.T) {
	var logBuf bytes.Buffer
	f := newFileService(filepath.Join(t.TempDir(), "c.pcapng"), 0, 0, zerolog.New(&logBuf))
	if err := f.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	p := &Plugin{name: "capture", file: f}
	f.mu.Lock()
	f.f.Close() // the disk goes away under the capture
	f.mu.Unlock()
	s := session("err-1", "127.0.0.1:1", "127.0.0.1:2")
	play(t, p, s, []chunk{{true, 400 << 10}, {false, 400 << 10}, {true, 1}})
	p.OnClose(s, plugins.Stats{Reason: plugins.ReasonClientClosed})
	err := f.Stop(context.Background())
	if err == nil || !strings.Contains(err.Error(), "write capture file") {
		t.Errorf("Stop: got %v, want the write error", err)
	}
	if n := strings.Count(logBuf.String(), "capture stopped"); n != 1 {
		t.Errorf("got %d error lines, want 1:\n%s", n, logBuf.String())
	}
}
