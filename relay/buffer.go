package relay

import "sync"

// DefaultBufferSize is the read size when none is configured.
const DefaultBufferSize = 32 << 10

// BufferPool hands out read buffers of one size, so that the hooked copy
// allocates nothing per chunk. One pool serves all channels of a listener.
type BufferPool struct {
	size int
	pool sync.Pool
}

// NewBufferPool returns a pool of size-byte buffers (DefaultBufferSize if
// size <= 0).
func NewBufferPool(size int) *BufferPool {
	if size <= 0 {
		size = DefaultBufferSize
	}
	b := &BufferPool{size: size}
	b.pool.New = func() any {
		buf := make([]byte, b.size)
		return &buf
	}
	return b
}

// Get returns a buffer; give it back with Put.
func (b *BufferPool) Get() *[]byte { return b.pool.Get().(*[]byte) }

// Put returns a buffer to the pool.
func (b *BufferPool) Put(p *[]byte) { b.pool.Put(p) }
