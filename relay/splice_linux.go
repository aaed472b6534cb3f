package relay

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// spliceable reports whether spliceCopy can join a and b.
func spliceable(a, b net.Conn) bool {
	_, okA := a.(*net.TCPConn)
	_, okB := b.(*net.TCPConn)
	return okA && okB
}

// spliceCopy moves bytes from src to dst through a kernel pipe until src's
// EOF (nil) or an error, calling moved after each chunk delivered. Unlike
// io.Copy's splice, which keeps its pipe (two descriptors) for as long as
// the copy runs, it takes a pipe from a shared pool only while bytes flow:
// an idle tunnel holds its two sockets and nothing else. ok is false when
// the connections cannot be spliced (the caller copies another way).
// Small chunks (after a small one, up to smallChunk) are read into a
// pooled buffer and written instead: cheaper than two splices for a few
// bytes, and haproxy does the same. A short read is forwarded from
// within the read callback, which then waits for the next edge without
// the read that would only have said EAGAIN (see splicer.fill).
//
// With idle set, a copy whose source stays silent for the Parker's After
// parks: it returns errParked, and the Parker resumes the direction on a
// new goroutine when the source wakes.
func spliceCopy(dst, src net.Conn, moved func(int), idle *idleWait) (ok bool, err error) {
	s, okS := src.(*net.TCPConn)
	d, okD := dst.(*net.TCPConn)
	if !okS || !okD {
		return false, nil
	}
	srcRC, err := s.SyscallConn()
	if err != nil {
		return false, nil
	}
	dstRC, err := d.SyscallConn()
	if err != nil {
		return false, nil
	}
	// The callbacks are bound once per copy, not per chunk: a closure
	// handed to RawConn escapes, and would allocate each time.
	sp := &splicer{small: true, dst: dstRC, moved: moved}
	sp.sendOnce = sp.writeOnce
	fill, drain, send := sp.fill, sp.drain, sp.send
	// The read deadline measures silence for parking: armed once per
	// After, not per chunk, so a busy copy pays a timer reset per After.
	var armedAt int64
	armed := false
	for {
		if idle != nil && !armed {
			s.SetReadDeadline(time.Now().Add(idle.c.Parker.After))
			armed, armedAt = true, sp.total
		}
		sp.p, sp.buf, sp.n, sp.err, sp.werr = nil, nil, 0, nil, nil
		// fill runs when the socket may have data; the pipe or buffer is
		// taken inside it and handed back if there was none.
		rerr := srcRC.Read(fill)
		if rerr == nil {
			rerr = sp.err
		}
		if rerr != nil {
			if sp.p != nil {
				putPipe(sp.p)
			}
			if sp.buf != nil {
				smallBufs.Put(sp.buf)
			}
			if idle != nil && errors.Is(rerr, os.ErrDeadlineExceeded) {
				armed = false
				if sp.total != armedAt {
					continue // bytes moved since: not idle
				}
				s.SetReadDeadline(time.Time{})
				if idle.c.Parker.park(idle.c, idle.dir, srcRC) {
					return true, errParked
				}
				continue
			}
			if idle != nil {
				s.SetReadDeadline(time.Time{})
			}
			if errors.Is(rerr, errNoPipe) {
				// Out of descriptors for a pipe: copy through user space.
				_, err := io.Copy(countingWriter{dst, moved}, readerOnly{src})
				return true, err
			}
			return true, readError{wrapSyscall("splice", rerr)}
		}
		if sp.buf != nil {
			// A small chunk, read into a buffer: written back with one
			// write, which for a few bytes costs less than two splices
			// through a pipe.
			n := sp.n
			if n == 0 {
				smallBufs.Put(sp.buf)
				return true, nil // EOF
			}
			werr := sp.werr
			if werr == nil && sp.left > 0 {
				sp.err = nil
				werr = dstRC.Write(send)
				if werr == nil {
					werr = sp.err
				}
			}
			full := n == len(*sp.buf)
			smallBufs.Put(sp.buf)
			if werr != nil {
				return true, writeError{wrapSyscall("write", werr)}
			}
			// A full buffer means more is waiting: splice the next chunk.
			sp.small = !full
			sp.total += int64(n)
			moved(n)
			continue
		}
		if sp.n == 0 {
			putPipe(sp.p)
			return true, nil // EOF
		}
		n := sp.n
		sp.small = n < smallChunk
		sp.left, sp.err = n, nil
		werr := dstRC.Write(drain)
		if werr == nil {
			werr = sp.err
		}
		if werr != nil {
			// The pipe may still hold bytes: do not reuse it.
			sp.p.close()
			return true, writeError{wrapSyscall("splice", werr)}
		}
		putPipe(sp.p)
		sp.total += int64(n)
		moved(n)
	}
}

// idleWait is what a parkable copy needs to park.
type idleWait struct {
	c   *Channel
	dir int
}

// splicer is one direction's state between RawConn callbacks.
type splicer struct {
	p       *pipe
	buf     *[]byte
	small   bool // the last chunk was small: read the next into a buffer
	n, left int
	err     error
	werr    error // a write error met inside fill

	dst      syscall.RawConn
	sendOnce func(uintptr) bool // writeOnce, bound once
	moved    func(int)
	total    int64 // bytes delivered
}

// smallChunk is the size up to which chunks go through a buffer rather
// than a pipe. Ping-pong traffic (requests, answers, keystrokes) stays
// under it; a bulk transfer fills the buffer once and then splices.
const smallChunk = 16 << 10

// smallBufs holds the buffers for small chunks, taken only while a chunk
// is handled.
var smallBufs = sync.Pool{New: func() any {
	b := make([]byte, smallChunk)
	return &b
}}

// fill reads the next chunk; it runs inside src's RawConn.Read, which
// calls it again each time the netpoller says src became readable.
//
// A small chunk that a short read brought is written on to dst from here,
// and fill then asks to wait (returns false) without reading again. A
// short read from a TCP socket means its receive queue was empty, so any
// later byte, FIN or RST raises a new edge-triggered event, which wakes
// this same RawConn.Read: nothing is missed, and the read that would only
// have said EAGAIN (one of the four syscalls each direction of a
// ping-pong costs) is saved. Only inside one RawConn.Read is that safe:
// a new RawConn.Read clears the readiness an event left meanwhile.
func (sp *splicer) fill(fd uintptr) bool {
	if sp.small {
		buf := smallBufs.Get().(*[]byte)
		m, err := rawRead(int(fd), *buf)
		for err == unix.EINTR {
			m, err = rawRead(int(fd), *buf)
		}
		if err == unix.EAGAIN {
			smallBufs.Put(buf)
			return false
		}
		sp.buf, sp.n, sp.err = buf, max(m, 0), err
		if err != nil || m == 0 || m == len(*buf) {
			sp.left = m
			return true // the caller ends, or writes and splices on
		}
		// A short read: write it on from here. dst's RawConn.Write (a
		// lock, no syscall of its own) keeps dst's descriptor from being
		// closed under the write; writeOnce never waits.
		sp.left = m
		if werr := sp.dst.Write(sp.sendOnce); werr != nil {
			sp.werr = werr
			return true
		}
		if sp.werr != nil || sp.left > 0 {
			return true // an error, or dst is full: the caller finishes
		}
		smallBufs.Put(buf)
		sp.buf, sp.n = nil, 0
		sp.total += int64(m)
		sp.moved(m)
		return false
	}
	sp.p = getPipe()
	if sp.p == nil {
		sp.err = errNoPipe
		return true
	}
	m, err := unix.Splice(int(fd), nil, sp.p.w, nil, maxSpliceChunk, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
	if err == unix.EAGAIN {
		putPipe(sp.p)
		sp.p = nil
		return false
	}
	sp.n, sp.err = int(m), err
	return true
}

func (sp *splicer) send(fd uintptr) bool {
	for sp.left > 0 {
		off := sp.n - sp.left
		m, err := rawWrite(int(fd), (*sp.buf)[off:sp.n])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			sp.err = err
			return true
		}
		sp.left -= m
	}
	return true
}

// writeOnce writes what is left of a small chunk without waiting for dst
// to become writable: fill must not block on dst while it holds src.
func (sp *splicer) writeOnce(fd uintptr) bool {
	for sp.left > 0 {
		off := sp.n - sp.left
		m, err := rawWrite(int(fd), (*sp.buf)[off:sp.n])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return true
		}
		if err != nil {
			sp.werr = err
			return true
		}
		sp.left -= m
	}
	return true
}

func (sp *splicer) drain(fd uintptr) bool {
	for sp.left > 0 {
		m, err := unix.Splice(sp.p.r, nil, int(fd), nil, sp.left, unix.SPLICE_F_MOVE|unix.SPLICE_F_NONBLOCK)
		if err == unix.EAGAIN {
			return false
		}
		if err != nil {
			sp.err = err
			return true
		}
		sp.left -= int(m)
	}
	return true
}

// rawRead and rawWrite are read(2) and write(2) on a non-blocking socket
// without the runtime's syscall bookkeeping. unix.Read and unix.Write go
// through entersyscall, which wakes the sleeping sysmon thread (a futex
// wake and a context switch) whenever the process had gone idle, as it
// does between the messages of a request-response exchange: a profile of
// a 64-byte ping-pong showed that wake-up on every small read and write.
// A non-blocking read or write of at most smallChunk bytes returns at
// once, so there is nothing for the scheduler to take over meanwhile.
func rawRead(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func rawWrite(fd int, p []byte) (int, error) {
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return -1, e
	}
	return int(r), nil
}

func wrapSyscall(name string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &net.OpError{Op: name, Net: "tcp", Err: err}
	}
	return err
}

// maxSpliceChunk is what one splice call may move, and the size pipes are
// given (as Go's own splice does).
const maxSpliceChunk = 1 << 20

var errNoPipe = errors.New("no pipe")

type pipe struct{ r, w int }

func (p *pipe) close() {
	runtime.SetFinalizer(p, nil)
	unix.Close(p.r)
	unix.Close(p.w)
}

// pipes holds empty pipes between chunks of any channel. Pipes the pool
// drops are closed by their finalizer.
var pipes = sync.Pool{New: func() any {
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil
	}
	// A pipe as large as a splice call asks for halves the calls per
	// byte; smaller (the limit is a sysctl) still works.
	unix.FcntlInt(uintptr(fds[0]), unix.F_SETPIPE_SZ, maxSpliceChunk)
	p := &pipe{r: fds[0], w: fds[1]}
	runtime.SetFinalizer(p, (*pipe).close)
	return p
}}

func getPipe() *pipe {
	p, _ := pipes.Get().(*pipe)
	return p
}

func putPipe(p *pipe) { pipes.Put(p) }

// readerOnly and countingWriter hide WriteTo and ReadFrom, so io.Copy
// uses a buffer instead of trying splice again.
type readerOnly struct{ io.Reader }

type countingWriter struct {
	w     io.Writer
	moved func(int)
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.moved(n)
	return n, err
}
