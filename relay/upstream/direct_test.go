package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/plugins"
)

// seqServer writes the accept number of each connection as one byte.
func seqServer(t *testing.T) *fakeServer {
	return startFake(t, func(_ *fakeServer, c net.Conn, seq int32) {
		c.Write([]byte{byte(seq)})
		io.Copy(io.Discard, c)
	})
}

func readSeq(t *testing.T, c net.Conn) int {
	t.Helper()
	return int(readN(t, c, 1)[0])
}

func TestDirect(t *testing.T) {
	srv := seqServer(t)
	c, err := Direct().DialContext(context.Background(), "tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustTCPConn(t, c)
	if readSeq(t, c) != 1 {
		t.Fatal("not the first connection")
	}
}

func TestDirectTargetCheckDial(t *testing.T) {
	srv := seqServer(t)
	refuse := plugins.Reject(plugins.CodeForbidden, "private address")
	var mu sync.Mutex
	var seen []netip.AddrPort
	info := &DialInfo{CheckDial: func(ap netip.AddrPort) error {
		mu.Lock()
		seen = append(seen, ap)
		mu.Unlock()
		if ap.Addr().IsLoopback() {
			return refuse
		}
		return nil
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := DirectTarget().DialContext(WithDialInfo(ctx, info), "tcp", srv.addr())
	if !errors.Is(err, refuse) {
		t.Fatalf("got %v, want the CheckDial refusal", err)
	}
	if DialCode(err) != plugins.CodeForbidden {
		t.Fatalf("DialCode = %v", DialCode(err))
	}
	want := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(srv.port()))
	mu.Lock()
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("CheckDial saw %v, want [%v]", seen, want)
	}
	mu.Unlock()

	// A check that allows: the connection is made, and it is the first
	// the server accepted (the refused dial never connected).
	info.CheckDial = func(ap netip.AddrPort) error {
		mu.Lock()
		seen = append(seen, ap)
		mu.Unlock()
		return nil
	}
	c, err := DirectTarget().DialContext(WithDialInfo(ctx, info), "tcp", srv.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	mustTCPConn(t, c)
	if n := readSeq(t, c); n != 1 {
		t.Fatalf("connection #%d: the refused dial reached the server", n)
	}
	mu.Lock()
	if len(seen) != 2 || seen[1] != want {
		t.Fatalf("CheckDial saw %v", seen)
	}
	mu.Unlock()

	// No DialInfo, or no CheckDial: a plain dial.
	for _, ctx := range []context.Context{ctx, WithDialInfo(ctx, &DialInfo{})} {
		c, err := DirectTarget().DialContext(ctx, "tcp", srv.addr())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestDirectTargetPinned(t *testing.T) {
	srv := seqServer(t)
	port := strconv.Itoa(srv.port())
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name    string
		info    func(checked *[]netip.AddrPort) *DialInfo
		address string
		ok      bool
		checked []string // addresses CheckDial saw, when set
	}{
		{"pinned name that does not resolve", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{lo}}
		}, "never-resolves.invalid:" + port, true, nil},
		{"first pinned address refused, next tried", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2"), lo}}
		}, "never-resolves.invalid:" + port, true, nil},
		{"pinned addresses are checked", func(checked *[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.3"), lo},
				CheckDial: func(ap netip.AddrPort) error {
					*checked = append(*checked, ap)
					if ap.Addr() == netip.MustParseAddr("127.0.0.3") {
						return errors.New("refused by check")
					}
					return nil
				}}
		}, "never-resolves.invalid:" + port, true, []string{"127.0.0.3:" + port, "127.0.0.1:" + port}},
		{"every pinned address fails", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "never-resolves.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}
		}, "never-resolves.invalid:" + port, false, nil},
		{"another host is not pinned", func(*[]netip.AddrPort) *DialInfo {
			return &DialInfo{PinnedHost: "other.invalid", Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}
		}, "127.0.0.1:" + port, true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var checked []netip.AddrPort
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			c, err := DirectTarget().DialContext(WithDialInfo(ctx, tt.info(&checked)), "tcp", tt.address)
			if !tt.ok {
				if err == nil {
					c.Close()
					t.Fatal("dial succeeded")
				}
				var dnsErr *net.DNSError
				if errors.As(err, &dnsErr) {
					t.Fatalf("dial resolved the pinned name: %v", err)
				}
				if !errors.Is(err, syscall.ECONNREFUSED) {
					t.Fatalf("got %v, want the pinned address refused", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mustTCPConn(t, c)
			readSeq(t, c) // reached the server
			if c.RemoteAddr().String() != "127.0.0.1:"+port {
				t.Fatalf("connected to %v", c.RemoteAddr())
			}
			if tt.checked != nil && fmt.Sprint(checked) != fmt.Sprint(tt.checked) {
				t.Fatalf("CheckDial saw %v, want %v", checked, tt.checked)
			}
		})
	}
}

// blackhole listens on ip:port with a full accept queue, so that a
// connect to it is never answered (Linux drops the SYN).
func blackhole(t *testing.T, ip [4]byte, port int) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("relies on Linux dropping SYNs to a full accept queue")
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: port, Addr: ip}); err != nil {
		t.Skipf("bind %v:%d: %v", ip, port, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort(netip.AddrFrom4(ip).String(), strconv.Itoa(port))
	for range 10 {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return // full
			}
			t.Fatalf("filling the accept queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("could not fill the accept queue")
}

func TestDirectTargetPinnedShare(t *testing.T) {
	// The first pinned address never answers: it gets its share of the
	// deadline, and the second still connects within the deadline.
	srv := seqServer(t)
	blackhole(t, [4]byte{127, 0, 0, 2}, srv.port())
	port := strconv.Itoa(srv.port())
	var mu sync.Mutex
	var checked []netip.AddrPort
	info := &DialInfo{PinnedHost: "never-resolves.invalid",
		Pinned: []netip.Addr{netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("127.0.0.1")},
		CheckDial: func(ap netip.AddrPort) error {
			mu.Lock()
			checked = append(checked, ap)
			mu.Unlock()
			return nil
		}}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	c, err := DirectTarget().DialContext(WithDialInfo(ctx, info), "tcp", "never-resolves.invalid:"+port)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readSeq(t, c)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(checked) != "[127.0.0.2:"+port+" 127.0.0.1:"+port+"]" {
		t.Fatalf("dialed %v", checked)
	}
}
