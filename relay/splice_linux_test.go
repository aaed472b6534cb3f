package relay

import (
	"bytes"
	"context"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// openPipes counts the process's pipe descriptors.
func openPipes(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	n := 0
	for _, e := range entries {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "pipe:") {
			n++
		}
	}
	return n
}

// TestIdleTunnelsHoldNoPipes: tunnels on the splice path that moved data
// both ways and then went idle hold no pipe; io.Copy's splice would keep
// one per direction, two descriptors each, for the tunnel's life.
func TestIdleTunnelsHoldNoPipes(t *testing.T) {
	const tunnels = 40
	before := openPipes(t)
	var done []<-chan Result
	var clients []io.Closer
	for range tunnels {
		client, target, ch := setup(t)
		done = append(done, runAsync(ch, context.Background()))
		buf := make([]byte, 5)
		for _, dir := range [][2]io.ReadWriter{{client, target}, {target, client}} {
			if _, err := dir[0].Write([]byte("hello")); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(dir[1], buf); err != nil || string(buf) != "hello" {
				t.Fatalf("relayed %q, %v", buf, err)
			}
		}
		clients = append(clients, client, target)
	}
	// Each tunnel spliced both ways; now all are idle, blocked waiting.
	// The shared pool may keep a few empty pipes, not one per tunnel.
	got := 0
	for range 50 {
		if got = openPipes(t) - before; got < tunnels {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got >= tunnels {
		t.Fatalf("%d idle tunnels hold %d pipe descriptors; want only the few pooled ones", tunnels, got)
	}
	for _, c := range clients {
		c.Close()
	}
	for _, d := range done {
		<-d
	}
}

// Chunks of every size around the small-chunk limit arrive whole and in
// order, whichever way (buffer or pipe) each goes.
func TestSpliceCopyChunkSizes(t *testing.T) {
	client, target, ch := setup(t)
	done := runAsync(ch, context.Background())
	sizes := []int{1, 64, smallChunk - 1, smallChunk, smallChunk + 1, 3 * smallChunk, 1 << 20, 7, smallChunk, 2}
	var want bytes.Buffer
	chunks := make([][]byte, len(sizes))
	for i, n := range sizes {
		chunks[i] = bytes.Repeat([]byte{byte('a' + i)}, n)
		want.Write(chunks[i])
	}
	go func() {
		for _, p := range chunks {
			if _, err := client.Write(p); err != nil {
				return
			}
			time.Sleep(2 * time.Millisecond) // let each arrive on its own
		}
		client.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(target)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("got %d bytes, want %d, or out of order", len(got), want.Len())
	}
	target.Close()
	if r := <-done; r.Up != int64(want.Len()) {
		t.Fatalf("counted up %d, want %d", r.Up, want.Len())
	}
}

// TestSpliceSmallChunkThenEOF: a short chunk whose FIN arrives with it (or
// just behind it, before the read) must end the direction at once. A
// read that returns the chunk leaves the EOF for the next read without a
// new readiness event, so the copy may not wait for one after a short
// read. No Parker: nothing else would wake a copy that waited wrongly.
func TestSpliceSmallChunkThenEOF(t *testing.T) {
	for i := range 50 {
		client, target, ch := setup(t)
		done := runAsync(ch, context.Background())
		msg := []byte(strings.Repeat("x", 1+i%64))
		// Written and half-closed in a row: the data and the FIN reach
		// ferry's socket together more often than not.
		if _, err := client.Write(msg); err != nil {
			t.Fatal(err)
		}
		client.(*net.TCPConn).CloseWrite()
		target.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(target)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round %d: target got %q, %v; want %q then EOF", i, got, err, msg)
		}
		target.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatalf("round %d: channel did not end", i)
		}
		client.Close()
	}
}
