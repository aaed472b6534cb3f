package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/proxyproto"
)

func testProxyHeader() *proxyproto.Header {
	return &proxyproto.Header{
		Version:     2,
		Command:     proxyproto.Proxy,
		Transport:   proxyproto.Stream,
		Source:      &net.TCPAddr{IP: net.IPv4(192, 0, 2, 10).To4(), Port: 51000},
		Destination: &net.TCPAddr{IP: net.IPv4(198, 51, 100, 20).To4(), Port: 443},
		TLVs: []proxyproto.TLV{
			{Type: proxyproto.TypeALPN, Value: []byte("h2")},
			{Type: proxyproto.TypeAuthority, Value: []byte("example.com")},
			{Type: proxyproto.TypeUniqueID, Value: []byte("conn-42")},
			{Type: 0xE0, Value: []byte("custom")},
		},
	}
}

func TestSendProxyHeader(t *testing.T) {
	tests := []struct {
		name     string
		version  int
		pass     []byte
		wantTLVs []byte
	}{
		{"v1", 1, nil, nil},
		{"v2 no TLVs", 2, nil, nil},
		{"v2 authority only", 2, []byte{proxyproto.TypeAuthority}, []byte{proxyproto.TypeAuthority}},
		{"v2 unique id and custom", 2, []byte{0xE0, proxyproto.TypeUniqueID, proxyproto.TypeNetNS},
			[]byte{proxyproto.TypeUniqueID, 0xE0}},
	}
	for _, tt := range tests {
		for _, proto := range []string{"http", "socks5"} {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				var d Dialer
				var log *headerLog
				forward := SendProxyHeader(Direct(), tt.version, tt.pass)
				if proto == "http" {
					srv := startHTTP(t, &httpFake{proxyHeader: true})
					log = &srv.headers
					d = HTTPConnect("pp", srv.addr(), "", "", nil, forward)
				} else {
					srv := startSOCKS(t, &socksFake{proxyHeader: true})
					log = &srv.headers
					var err error
					if d, err = SOCKS5("pp", srv.addr(), nil, forward); err != nil {
						t.Fatal(err)
					}
				}
				src := testProxyHeader()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				ctx = WithDialInfo(ctx, &DialInfo{ProxyHeader: src})
				c, err := d.DialContext(ctx, "tcp", "example.com:443")
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				mustTCPConn(t, c)
				echoCheck(t, c)

				h, err := log.get(t)
				if err != nil {
					t.Fatalf("proxy read no valid PROXY header: %v", err)
				}
				if h.Version != tt.version || h.Command != proxyproto.Proxy || h.Transport != proxyproto.Stream {
					t.Fatalf("header %+v", h)
				}
				if h.Source.String() != src.Source.String() || h.Destination.String() != src.Destination.String() {
					t.Fatalf("addresses %v -> %v, want %v -> %v", h.Source, h.Destination, src.Source, src.Destination)
				}
				var got []byte
				for _, tlv := range h.TLVs {
					got = append(got, tlv.Type)
					v, _ := src.TLV(tlv.Type)
					if !bytes.Equal(v, tlv.Value) {
						t.Fatalf("TLV 0x%02x = %q, want %q", tlv.Type, tlv.Value, v)
					}
				}
				if !bytes.Equal(got, tt.wantTLVs) {
					t.Fatalf("TLV types % x, want % x", got, tt.wantTLVs)
				}
				// The caller's header is not modified.
				if src.Version != 2 || len(src.TLVs) != 4 {
					t.Fatalf("caller's header changed: %+v", src)
				}
			})
		}
	}
}

func TestSendProxyHeaderNone(t *testing.T) {
	for _, tt := range []struct {
		name string
		ctx  context.Context
	}{
		{"no DialInfo", context.Background()},
		{"DialInfo without header", WithDialInfo(context.Background(), &DialInfo{})},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := startHTTP(t, &httpFake{proxyHeader: true})
			d := HTTPConnect("pp", srv.addr(), "", "", nil, SendProxyHeader(Direct(), 2, nil))
			ctx, cancel := context.WithTimeout(tt.ctx, 10*time.Second)
			defer cancel()
			c, err := d.DialContext(ctx, "tcp", "example.com:443")
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoCheck(t, c)
			if _, err := srv.headers.get(t); !errors.Is(err, proxyproto.ErrNoHeader) {
				t.Fatalf("proxy saw %v, want no header", err)
			}
		})
	}
}

func TestSendProxyHeaderErrors(t *testing.T) {
	// The forward dialer's error passes through untouched.
	addr := closedAddr(t)
	ctx := WithDialInfo(context.Background(), &DialInfo{ProxyHeader: testProxyHeader()})
	_, err := SendProxyHeader(Direct(), 2, nil).DialContext(ctx, "tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("got %v, want connection refused", err)
	}
	// A header that cannot be written fails the dial and closes the
	// connection.
	srv := startFake(t, func(_ *fakeServer, c net.Conn, _ int32) { io.Copy(io.Discard, c) })
	bad := testProxyHeader()
	bad.Command = proxyproto.Local // LOCAL with addresses is refused by Format
	ctx = WithDialInfo(context.Background(), &DialInfo{ProxyHeader: bad})
	c, err := SendProxyHeader(Direct(), 2, nil).DialContext(ctx, "tcp", srv.addr())
	if err == nil {
		c.Close()
		t.Fatal("dial with a bad header succeeded")
	}
	if !strings.Contains(err.Error(), srv.addr()) {
		t.Fatalf("error %q does not name the address", err)
	}
}
