package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"syscall"
	"testing"
	"time"

	"ferry/test/testkit"
)

// byteConn is a net.Conn reading from a fixed stream.
type byteConn struct {
	net.Conn
	r io.Reader
}

func (c *byteConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// TestRecordConn: a read takes at most the rest of a record's body and
// the next header, whatever the buffer; midRecord holds from a header to
// the end of its body.
func TestRecordConn(t *testing.T) {
	record := func(n int) []byte {
		return append([]byte{23, 3, 3, byte(n >> 8), byte(n)}, bytes.Repeat([]byte{'x'}, n)...)
	}
	var stream []byte
	for _, n := range []int{3, 0, 300, 1} {
		stream = append(stream, record(n)...)
	}
	c := &recordConn{Conn: &byteConn{r: bytes.NewReader(stream)}}
	var got []int
	var mid []bool
	buf := make([]byte, 4096)
	for range 20 {
		n, err := c.Read(buf)
		if err == io.EOF {
			break
		}
		got = append(got, n)
		mid = append(mid, c.midRecord())
	}
	// 5: the first header; 3+5: its body and the empty record's header;
	// 5: the next header; 300+5; 1 and the end.
	if want := []int{5, 8, 5, 305, 1}; !slices.Equal(got, want) {
		t.Errorf("read sizes %v, want %v", got, want)
	}
	if want := []bool{true, false, true, true, false}; fmt.Sprint(mid) != fmt.Sprint(want) {
		t.Errorf("midRecord after each read %v, want %v", mid, want)
	}
}

// tlsPair returns a server-side tlsClient and the client's TLS conn over
// loopback TCP, handshake done.
func tlsPair(t *testing.T) (*tlsClient, *tls.Conn) {
	t.Helper()
	pki := testkit.NewPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type side struct {
		raw net.Conn
		rec *recordConn
		sc  *tls.Conn
		err error
	}
	done := make(chan side, 1)
	go func() {
		raw, err := ln.Accept()
		if err != nil {
			done <- side{err: err}
			return
		}
		raw.SetDeadline(time.Now().Add(10 * time.Second))
		rec := &recordConn{Conn: raw}
		sc := tls.Server(rec, pki.ServerTLS())
		done <- side{raw, rec, sc, sc.Handshake()}
	}()
	d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 5 * time.Second},
		Config: &tls.Config{RootCAs: pki.Roots(), ServerName: "127.0.0.1"}}
	nc, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	cc := nc.(*tls.Conn)
	t.Cleanup(func() { cc.Close() })
	cc.Write([]byte("h"))
	s := <-done
	if s.err != nil {
		t.Fatal(s.err)
	}
	raw, rec, sc := s.raw, s.rec, s.sc
	rc, _ := raw.(syscall.Conn).SyscallConn()
	c := &tlsClient{Conn: sc, rec: rec, tcp: raw, raw: rc}
	t.Cleanup(func() { c.Close() })
	if n, err := c.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Fatalf("read the first byte: %d, %v", n, err)
	}
	return c, cc
}

// TestTLSClientWaitRead: WaitRead waits on the socket only when nothing
// is left inside crypto/tls: records that came together, a Read that
// filled its buffer; and it passes on a reset, which the kernel reports
// once.
func TestTLSClientWaitRead(t *testing.T) {
	c, cc := tlsPair(t)
	c.tcp.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if err := c.WaitRead(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("WaitRead with nothing sent: %v, want the deadline", err)
	}
	c.tcp.SetReadDeadline(time.Now().Add(10 * time.Second))
	// Two records in one segment: the second is in the socket, not in
	// crypto/tls, after the first Read.
	cc.Write([]byte("first"))
	cc.Write([]byte("second"))
	time.Sleep(50 * time.Millisecond)
	buf := make([]byte, 100)
	for _, want := range []string{"first", "second"} {
		if err := c.WaitRead(); err != nil {
			t.Fatalf("WaitRead before %q: %v", want, err)
		}
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != want {
			t.Fatalf("Read %q, %v; want %q", buf[:n], err, want)
		}
	}
	// A record larger than the buffer: the rest is inside crypto/tls.
	cc.Write(bytes.Repeat([]byte{'y'}, 1000))
	total := 0
	for total < 1000 {
		if err := c.WaitRead(); err != nil {
			t.Fatalf("WaitRead at %d of 1000: %v", total, err)
		}
		n, err := c.Read(buf[:30]) // 30 does not divide 1000: the last Read has room
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	cc.NetConn().(*net.TCPConn).SetLinger(0)
	cc.NetConn().Close()
	if err := c.WaitRead(); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("WaitRead after the client's reset: %v, want ECONNRESET", err)
	}
}
