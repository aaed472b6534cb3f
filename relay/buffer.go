package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
)

// DefaultBufferSize is the read size when none is configured.
const DefaultBufferSize = 128 << 10

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

	bufp *[]byte
	n    int
	err  error
}

func newChunkReader(src net.Conn, pool *BufferPool) *chunkReader {
	r := &chunkReader{src: src, pool: pool}
	if rc := rawConn(src); rc != nil {
		r.rc = rc
		r.fn = r.read // bound once: a closure per read would allocate
	} else if w, ok := src.(ReadWaiter); ok {
		r.wait = w
	}
	return r
}

func (r *chunkReader) read(fd uintptr) bool {
	r.bufp = r.pool.Get()
	r.n, r.err = rawRead(int(fd), *r.bufp)
	if r.err == syscall.EAGAIN {
		r.pool.Put(r.bufp)
		r.bufp = nil
		return false
	}
	return true
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
		bufp = r.pool.Get()
		n, err = r.src.Read(*bufp)
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
