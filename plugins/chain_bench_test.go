package plugins

import (
	"context"
	"fmt"
	"testing"
)

// nopPlugin implements the hooks the server and relay dispatch through a
// Chain per chunk (OnRead, OnWrite) and per channel (OnConnect, OnClose),
// and does nothing in them: what is measured is the Chain's dispatch.
type nopPlugin struct{ name string }

func (p nopPlugin) Name() string                               { return p.name }
func (nopPlugin) OnConnect(context.Context, *Session) error    { return nil }
func (nopPlugin) OnRead(_ *Session, b []byte) ([]byte, error)  { return b, nil }
func (nopPlugin) OnWrite(_ *Session, b []byte) ([]byte, error) { return b, nil }
func (nopPlugin) OnClose(*Session, Stats)                      {}

func nopChain(n int) *Chain {
	ps := make([]Plugin, n)
	for i := range ps {
		ps[i] = nopPlugin{name: fmt.Sprintf("nop%d", i)}
	}
	return NewChain(ps)
}

// BenchmarkChain measures Chain.Read, Write, Connect and Close over 0, 1
// and 4 no-op plugins. Read and Write run once per relayed chunk on a
// hooked channel; Connect and Close once per session.
//
//	go test -run '^$' -bench Chain ./plugins/
func BenchmarkChain(b *testing.B) {
	counts := []int{0, 1, 4}
	chunk := make([]byte, 16<<10)
	s := &Session{}
	ctx := context.Background()
	onPanic := func(err error) { b.Error(err) }
	hooks := []struct {
		name string
		run  func(b *testing.B, c *Chain)
	}{
		{"Read", func(b *testing.B, c *Chain) {
			for b.Loop() {
				if out, err := c.Read(s, chunk); err != nil || len(out) != len(chunk) {
					b.Fatalf("Read: %d bytes, %v", len(out), err)
				}
			}
		}},
		{"Write", func(b *testing.B, c *Chain) {
			for b.Loop() {
				if out, err := c.Write(s, chunk); err != nil || len(out) != len(chunk) {
					b.Fatalf("Write: %d bytes, %v", len(out), err)
				}
			}
		}},
		{"Connect", func(b *testing.B, c *Chain) {
			for b.Loop() {
				if err := c.Connect(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		}},
		{"Close", func(b *testing.B, c *Chain) {
			st := Stats{Up: 1, Down: 1}
			for b.Loop() {
				c.Close(s, st, onPanic)
			}
		}},
	}
	for _, h := range hooks {
		for _, n := range counts {
			c := nopChain(n)
			b.Run(fmt.Sprintf("%s/plugins=%d", h.name, n), func(b *testing.B) {
				b.ReportAllocs()
				h.run(b, c)
			})
		}
	}
}
