package relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// SpliceN moves exactly what it is asked and leaves the rest in the
// socket, so the next message on a kept-alive connection is intact; a
// source that ends early, a hook that refuses, a destination that went
// away and a deadline each end it with the error on the right side.
func TestSpliceN(t *testing.T) {
	const n = 3<<20 + 123 // over maxSpliceChunk, not a multiple of it
	body := bytes.Repeat([]byte("0123456789abcdef"), (n+15)/16)[:n]
	stop := errors.New("stopped")
	tests := []struct {
		name       string
		send       []byte // what the source's peer writes
		closeSrc   bool   // then it closes
		closeDst   bool   // the destination's peer is gone
		beforeRead func(reads *int) error
		// beforeWrite refuses the write after the first chunk's.
		beforeWrite bool
		wantRead    error
		wantWrite   bool
		wantMoved   int
	}{
		{name: "exact, rest left", send: append(append([]byte{}, body...), "NEXT"...), wantMoved: n},
		{name: "early EOF", send: body[:n/2], closeSrc: true, wantRead: io.ErrUnexpectedEOF, wantMoved: n / 2},
		{name: "refused before a read", send: body, beforeRead: func(reads *int) error {
			if *reads++; *reads > 1 {
				return stop
			}
			return nil
		}, wantRead: stop},
		{name: "refused before a write", send: body, beforeWrite: true, wantWrite: true},
		{name: "destination gone", send: body, closeDst: true, wantWrite: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srcPeer, src := tcpPair(t)
			dst, dstPeer := tcpPair(t)
			src.SetDeadline(time.Now().Add(10 * time.Second))
			dst.SetDeadline(time.Now().Add(10 * time.Second))
			go func() {
				srcPeer.Write(tt.send)
				if tt.closeSrc {
					srcPeer.Close()
				}
			}()
			got := make(chan []byte, 1)
			if tt.closeDst {
				dstPeer.(*net.TCPConn).SetLinger(0)
				dstPeer.Close()
				got <- nil
			} else {
				go func() { b, _ := io.ReadAll(dstPeer); got <- b }()
			}
			reads, moved := 0, 0
			h := SpliceHooks{Moved: func(m int) { moved += m }}
			if tt.beforeRead != nil {
				h.BeforeRead = func() error { return tt.beforeRead(&reads) }
			}
			writes := 0
			if tt.beforeWrite {
				h.BeforeWrite = func() error {
					if writes++; writes > 1 {
						return stop
					}
					return nil
				}
			}
			rerr, werr := SpliceN(dst, src, n, h)
			if tt.beforeWrite && (!errors.Is(werr, stop) || moved >= n) {
				t.Fatalf("write error %v after %d bytes, want the hook's before the end", werr, moved)
			}
			dst.Close()
			if !errors.Is(rerr, tt.wantRead) || tt.wantRead == nil && rerr != nil {
				t.Fatalf("read error %v, want %v", rerr, tt.wantRead)
			}
			if (werr != nil) != tt.wantWrite {
				t.Fatalf("write error %v, want one: %v", werr, tt.wantWrite)
			}
			b := <-got
			if tt.wantMoved > 0 && (moved != tt.wantMoved || !bytes.Equal(b, body[:tt.wantMoved])) {
				t.Fatalf("moved %d (told) / %d (received), want %d as sent", moved, len(b), tt.wantMoved)
			}
			if tt.name == "exact, rest left" {
				rest := make([]byte, 4)
				if _, err := io.ReadFull(src, rest); err != nil || string(rest) != "NEXT" {
					t.Fatalf("after the body the source holds %q, %v; want NEXT", rest, err)
				}
			}
		})
	}
}

// A source that stays silent ends SpliceN with its read deadline, which
// BeforeRead renews: a stalled body does not hold the copy for good.
func TestSpliceNDeadline(t *testing.T) {
	srcPeer, src := tcpPair(t)
	dst, dstPeer := tcpPair(t)
	go io.Copy(io.Discard, dstPeer)
	srcPeer.Write(make([]byte, 100<<10))
	renewed := 0
	start := time.Now()
	rerr, werr := SpliceN(dst, src, 1<<20, SpliceHooks{BeforeRead: func() error {
		renewed++
		return src.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	}})
	if werr != nil || !errors.Is(rerr, os.ErrDeadlineExceeded) {
		t.Fatalf("got %v, %v; want a read timeout", rerr, werr)
	}
	if d := time.Since(start); d > 5*time.Second || renewed < 2 {
		t.Fatalf("ended after %v with %d renewals, want soon after the bytes stopped, renewed per chunk", d, renewed)
	}
}

// A destination that reads slowly, so that one chunk takes longer than
// the write deadline BeforeWrite renews, still gets every byte: the
// deadline is renewed while the chunk moves. One that stops reading ends
// SpliceN with the deadline soon after.
func TestSpliceNSlowDestination(t *testing.T) {
	const n = 2 << 20
	body := bytes.Repeat([]byte("0123456789abcdef"), n/16)
	for _, stall := range []bool{false, true} {
		t.Run(fmt.Sprintf("stall=%v", stall), func(t *testing.T) {
			srcPeer, src := tcpPair(t)
			dst, dstPeer := tcpPair(t)
			// Socket buffers small enough that a 1 MiB chunk waits on the
			// reader, and over twice loopback's 64 KiB segment, below which
			// the receiver's window updates wait for the sender's probes.
			dst.(*net.TCPConn).SetWriteBuffer(192 << 10)
			dstPeer.(*net.TCPConn).SetReadBuffer(192 << 10)
			go srcPeer.Write(body)
			got := make(chan []byte, 1)
			go func() {
				var b []byte
				buf := make([]byte, 64<<10)
				dstPeer.SetReadDeadline(time.Now().Add(10 * time.Second))
				for len(b) < n && !(stall && len(b) >= 64<<10) {
					k, err := dstPeer.Read(buf)
					b = append(b, buf[:k]...)
					if err != nil {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
				got <- b
			}()
			start := time.Now()
			rerr, werr := SpliceN(dst, src, n, SpliceHooks{BeforeWrite: func() error {
				return dst.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			}})
			if stall {
				if rerr != nil || !errors.Is(werr, os.ErrDeadlineExceeded) {
					t.Fatalf("got %v, %v; want the write's deadline", rerr, werr)
				}
				if d := time.Since(start); d > 5*time.Second {
					t.Fatalf("ended after %v", d)
				}
				return
			}
			if rerr != nil || werr != nil {
				t.Fatalf("got %v, %v after %v; want every byte", rerr, werr, time.Since(start))
			}
			if b := <-got; !bytes.Equal(b, body) {
				t.Fatalf("received %d bytes, want the %d sent, as sent", len(b), n)
			}
		})
	}
}
