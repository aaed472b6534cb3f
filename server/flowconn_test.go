package server

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"ferry/plugins"
)

// budget is a plugins.Meter that lets through n bytes each way, then
// cuts.
type budget struct{ left [2]int }

func (b *budget) Name() string { return "budget" }
func (b *budget) OnBytes(_ *plugins.Session, d plugins.Direction, n int) (int, error) {
	keep := min(n, b.left[d])
	b.left[d] -= keep
	return keep, nil
}

// TestFlowClientMeterCut: an intercepted tunnel's client side delivers
// what a Meter kept before it cut the stream, each way, then fails with
// ErrClose, and counts only what went.
func TestFlowClientMeterCut(t *testing.T) {
	ours, theirs := net.Pipe()
	defer theirs.Close()
	theirs.SetDeadline(time.Now().Add(5 * time.Second))
	fc := newFlowClient(ours, &plugins.Session{}, plugins.NewChain([]plugins.Plugin{&budget{left: [2]int{5, 3}}}))
	go theirs.Write([]byte("hello world"))
	p := make([]byte, 64)
	n, err := fc.Read(p)
	if string(p[:n]) != "hello" || err != nil {
		t.Fatalf("first read: %q, %v; want the 5 bytes kept", p[:n], err)
	}
	if n, err := fc.Read(p); n != 0 || !errors.Is(err, plugins.ErrClose) {
		t.Fatalf("read after the cut: %d, %v; want ErrClose", n, err)
	}
	ours2, theirs2 := net.Pipe()
	defer theirs2.Close()
	fc = newFlowClient(ours2, &plugins.Session{}, plugins.NewChain([]plugins.Plugin{&budget{left: [2]int{5, 3}}}))
	got := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(theirs2)
		got <- string(b)
	}()
	if _, err := fc.Write([]byte("abcdefgh")); !errors.Is(err, plugins.ErrClose) {
		t.Fatalf("write: %v, want ErrClose", err)
	}
	fc.Close()
	if s := <-got; s != "abc" {
		t.Fatalf("client got %q, want the 3 bytes kept", s)
	}
	if up, down := fc.Bytes(); up != 0 || down != 3 {
		t.Errorf("counted %d up, %d down; want 0, 3", up, down)
	}
}
