package relay

import (
	"io"
	"slices"
	"testing"
	"time"
)

// TestBufferPoolClasses: a growing pool's classes double from its size to
// its max, a cap picks the highest class under it, and grown buffers out
// at once stay within GrowBudget (past it, class 0 comes back).
func TestBufferPoolClasses(t *testing.T) {
	tests := []struct {
		size, max int
		want      []int
	}{
		{size: 128 << 10, max: 1 << 20, want: []int{128 << 10, 256 << 10, 512 << 10, 1 << 20}},
		{size: 100, max: 700, want: []int{100, 200, 400, 700}},
		{size: 4096, max: 4096, want: []int{4096}},
		{size: 0, max: 0, want: []int{DefaultBufferSize}},
	}
	for _, tt := range tests {
		b := NewGrowingPool(tt.size, tt.max)
		if !slices.Equal(b.sizes, tt.want) {
			t.Errorf("NewGrowingPool(%d, %d): classes %v, want %v", tt.size, tt.max, b.sizes, tt.want)
		}
	}
	b := NewGrowingPool(128<<10, 1<<20)
	for _, c := range []struct{ limit, want int }{{0, 3}, {1 << 20, 3}, {600 << 10, 2}, {256 << 10, 1}, {16 << 10, 0}} {
		if got := b.top(c.limit); got != c.want {
			t.Errorf("top(%d) = %d, want %d", c.limit, got, c.want)
		}
	}
	var out []*[]byte
	for range GrowBudget / (1 << 20) {
		out = append(out, b.get(3))
	}
	if p := b.get(3); len(*p) != 128<<10 {
		t.Errorf("past the budget: a %d-byte buffer, want the pool's size", len(*p))
	} else {
		b.Put(p)
	}
	b.Put(out[0])
	if p := b.get(3); len(*p) != 1<<20 {
		t.Errorf("after one came back: a %d-byte buffer, want 1 MiB", len(*p))
	}
	if b.over.Load() != GrowBudget {
		t.Errorf("grown bytes out: %d, want %d", b.over.Load(), GrowBudget)
	}
}

// TestChunkReaderGrows: reads that fill their buffers grow to the top
// class, ones under a quarter full shrink back, and a cap holds.
func TestChunkReaderGrows(t *testing.T) {
	for _, tt := range []struct {
		limit int
		top   int
	}{{0, 3}, {256 << 10, 1}} {
		client, ferry := tcpPair(t)
		pool := NewGrowingPool(128<<10, 1<<20)
		rd := newChunkReader(ferry, pool, tt.limit)
		go client.Write(make([]byte, 8<<20))
		// Let the socket buffers fill: reads of a backlog fill their
		// buffers (a reader that keeps up with the sender needs no
		// large ones, and shrinks).
		time.Sleep(100 * time.Millisecond)
		var sizes []int
		for got := 0; got < 8<<20; {
			bufp, n, err := rd.next()
			if err != nil {
				t.Fatal(err)
			}
			sizes = append(sizes, len(*bufp))
			pool.Put(bufp)
			got += n
		}
		if m := slices.Max(sizes); m != pool.sizes[tt.top] {
			t.Errorf("limit %d: largest read %d (reads %v), want %d", tt.limit, m, sizes, pool.sizes[tt.top])
		}
		for range 4 {
			client.Write([]byte("ping"))
			bufp, _, err := rd.next()
			if err != nil {
				t.Fatal(err)
			}
			pool.Put(bufp)
		}
		if rd.class != 0 {
			t.Errorf("limit %d: class %d after small reads, want 0", tt.limit, rd.class)
		}
		client.Close()
		if _, _, err := rd.next(); err != io.EOF {
			t.Errorf("at the end: %v, want EOF", err)
		}
	}
}
