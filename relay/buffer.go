package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// DefaultBufferSize is the read size when none is configured.
const DefaultBufferSize = 128 << 10

// DefaultMaxBufferSize is what the reads of a bulk transfer grow to when
// no ceiling is configured: as large as a spliced chunk (maxSpliceChunk).
const DefaultMaxBufferSize = 1 << 20

// GrowBudget bounds the bytes of grown buffers (larger than the pool's
// size) one pool hands out at once: past it, reads stay at the pool's
// size, so a listener's bulk transfers add at most this much memory.
const GrowBudget = 32 << 20

// BufferPool hands out read buffers, so that the hooked copy allocates
// nothing per chunk. One pool serves all channels of a listener. Its
// buffers come in classes: the pool's size, then doubling up to its max
// (NewGrowingPool); a chunkReader moves up a class while its reads fill
// their buffers and down when they come back mostly empty, so bulk
// transfers read in large chunks (fewer system calls per byte) and
// interactive ones in small.
type BufferPool struct {
	sizes []int // by class: size, 2*size, ..., max
	pools []sync.Pool
	over  atomic.Int64 // bytes of buffers of class > 0 handed out
}

// NewBufferPool returns a pool of size-byte buffers (DefaultBufferSize if
// size <= 0) that does not grow.
func NewBufferPool(size int) *BufferPool { return NewGrowingPool(size, size) }

// NewGrowingPool returns a pool of size-byte buffers whose readers may
// grow to max bytes (not below size) within GrowBudget.
func NewGrowingPool(size, max int) *BufferPool {
	if size <= 0 {
		size = DefaultBufferSize
	}
	b := &BufferPool{sizes: []int{size}}
	for last := size; last < max; {
		last = min(2*last, max)
		b.sizes = append(b.sizes, last)
	}
	b.pools = make([]sync.Pool, len(b.sizes))
	for i := range b.pools {
		n := b.sizes[i]
		b.pools[i].New = func() any {
			buf := make([]byte, n)
			return &buf
		}
	}
	return b
}

// Get returns a buffer of the pool's size; give it back with Put.
func (b *BufferPool) Get() *[]byte { return b.pools[0].Get().(*[]byte) }

// get returns a buffer of class c, or of class 0 when the grown buffers
// out would pass GrowBudget.
func (b *BufferPool) get(c int) *[]byte {
	if c > 0 {
		if b.over.Add(int64(b.sizes[c])) <= GrowBudget {
			return b.pools[c].Get().(*[]byte)
		}
		b.over.Add(-int64(b.sizes[c]))
	}
	return b.pools[0].Get().(*[]byte)
}

// Put returns a buffer to the pool.
func (b *BufferPool) Put(p *[]byte) {
	n := cap(*p)
	if n == b.sizes[0] {
		b.pools[0].Put(p)
		return
	}
	for c := 1; c < len(b.sizes); c++ {
		if n == b.sizes[c] {
			b.over.Add(-int64(n))
			b.pools[c].Put(p)
			return
		}
	}
}

// top is the highest class whose buffers hold at most limit bytes (0:
// no limit); class 0 when even its buffers are larger.
func (b *BufferPool) top(limit int) int {
	c := len(b.sizes) - 1
	for limit > 0 && c > 0 && b.sizes[c] > limit {
		c--
	}
	return c
}

// ReadWaiter is a connection that is not a socket but can wait for input
// without a buffer, as a TLS connection over one can: WaitRead returns
// once a Read may not block (bytes came, or some are left from the last
// Read), or with the error a Read would meet. Its reader waits on it
// before it takes a buffer.
type ReadWaiter interface{ WaitRead() error }

// chunkReader reads src in chunks into buffers taken from the pool only
// once src has data: waiting without a buffer is what keeps idle channels
// cheap. Connections that are not sockets fall back to a plain Read,
// after WaitRead when they are ReadWaiters.
type chunkReader struct {
	src  net.Conn
	pool *BufferPool
	rc   syscall.RawConn // nil: plain Read
	wait ReadWaiter      // with rc nil, waited on before a Read
	fn   func(uintptr) bool
	// class is the pool class the next read takes a buffer of; top the
	// highest it may reach.
	class, top int

	bufp *[]byte
	n    int
	err  error
}

// newChunkReader reads src with buffers from pool, growing them up to
// limit bytes (0: the pool's max).
func newChunkReader(src net.Conn, pool *BufferPool, limit int) *chunkReader {
	r := &chunkReader{src: src, pool: pool, top: pool.top(limit)}
	if rc := rawConn(src); rc != nil {
		r.rc = rc
		r.fn = r.read // bound once: a closure per read would allocate
	} else if w, ok := src.(ReadWaiter); ok {
		r.wait = w
	}
	return r
}

func (r *chunkReader) read(fd uintptr) bool {
	r.bufp = r.pool.get(r.class)
	r.n, r.err = rawRead(int(fd), *r.bufp)
	if r.err == syscall.EAGAIN {
		r.pool.Put(r.bufp)
		r.bufp = nil
		return false
	}
	r.adapt(len(*r.bufp), r.n)
	return true
}

// adapt picks the class of the next read from the last, which read n
// bytes into a size-byte buffer: a full buffer means more was waiting (a
// bulk transfer), one under a quarter full means the flow is not one, or
// no longer.
func (r *chunkReader) adapt(size, n int) {
	switch {
	case n == size && r.class < r.top:
		r.class++
	case n < size/4 && r.class > 0:
		r.class--
	}
}

// next returns the next chunk in a pooled buffer (nil when none was
// needed); give the buffer back to the pool when done with it.
func (r *chunkReader) next() (bufp *[]byte, n int, err error) {
	if r.rc == nil {
		if r.wait != nil {
			if err := r.wait.WaitRead(); err != nil {
				return nil, 0, err
			}
		}
		bufp = r.pool.get(r.class)
		n, err = r.src.Read(*bufp)
		r.adapt(len(*bufp), n)
		return bufp, n, err
	}
	r.bufp, r.n, r.err = nil, 0, nil
	err = r.rc.Read(r.fn)
	if err == nil {
		err = r.err
	}
	switch {
	case err != nil:
		return r.bufp, max(r.n, 0), wrapRead(err)
	case r.n == 0:
		return r.bufp, 0, io.EOF
	}
	return r.bufp, r.n, nil
}

// wrapRead gives a raw read error the shape net.Conn.Read would.
func wrapRead(err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", err)}
	}
	return err
}

// chunkWriter writes chunks to dst. On a socket it writes with raw
// syscalls inside dst's RawConn.Write, for the reason rawWrite gives; a
// write that takes longer than sysmon's 20 us tick (a chunk of
// buffer_size) would otherwise also hand the scheduler to another thread
// and take it back. Other connections (TLS after mitm) use Write.
type chunkWriter struct {
	dst net.Conn
	rc  syscall.RawConn // nil: plain Write
	fn  func(uintptr) bool

	p   []byte
	n   int
	err error
}

// init readies w, in place, to write to dst: w must not move afterwards
// (its callback is bound to it).
func (w *chunkWriter) init(dst net.Conn) {
	*w = chunkWriter{dst: dst}
	if rc := rawConn(dst); rc != nil {
		w.rc = rc
		w.fn = w.send
	}
}

func (w *chunkWriter) send(fd uintptr) bool {
	for w.n < len(w.p) {
		m, err := rawWrite(int(fd), w.p[w.n:])
		switch {
		case err == syscall.EAGAIN:
			return false // wait until dst can take more
		case err != nil:
			w.err = err
			return true
		}
		w.n += m
	}
	return true
}

// write writes all of p, as net.Conn.Write does.
func (w *chunkWriter) write(p []byte) (int, error) {
	if w.rc == nil {
		return w.dst.Write(p)
	}
	w.p, w.n, w.err = p, 0, nil
	err := w.rc.Write(w.fn)
	if err == nil && w.err != nil {
		err = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", w.err)}
	}
	n := w.n
	w.p = nil
	return n, err
}
